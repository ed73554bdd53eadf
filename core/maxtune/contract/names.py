"""The public names of maxtune: API group, labels, annotations, resources.

Everything a user or another system can see is spelled here once, so that the
agent, the operator, the chart tests and the CLI cannot drift apart. Changing
any of these is a breaking change (docs/decisions/ says why before it happens).
"""

from __future__ import annotations

from typing import Final

GROUP: Final = "maxtune.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

# Custom resources (plural names are what the API server routes on).
PROFILE_KIND: Final = "GPUNodeProfile"
PROFILE_PLURAL: Final = "gpunodeprofiles"
POLICY_KIND: Final = "AutotunePolicy"
POLICY_PLURAL: Final = "autotunepolicies"
DEFAULT_POLICY_NAME: Final = "default"

# Node labels owned by the operator. Every label it writes starts with PREFIX,
# and every label under PREFIX on a node is the operator's to remove.
PREFIX: Final = f"{GROUP}/"
LABEL_CAPABLE: Final = f"{PREFIX}max-autotune-capable"
LABEL_SM_COUNT: Final = f"{PREFIX}sm-count"
LABEL_MODE: Final = f"{PREFIX}recommended-mode"
LABEL_CLASS: Final = f"{PREFIX}gpu-class"
NODE_LABELS: Final = (LABEL_CAPABLE, LABEL_SM_COUNT, LABEL_MODE, LABEL_CLASS)

# Pod opt-in: pod label "true"/"false", or namespace label "enabled".
LABEL_INJECT: Final = f"{PREFIX}inject"
INJECT_POD_ON: Final = "true"
INJECT_POD_OFF: Final = "false"
INJECT_NAMESPACE_ON: Final = "enabled"

# Agents' heartbeats: one coordination.k8s.io Lease per GPU node, named after the node, in the
# release namespace, renewed every agent interval (the profile is written only on change).
LABEL_AGENT_LEASE: Final = f"{PREFIX}agent-heartbeat"
AGENT_LEASE_SELECTOR: Final = f"{LABEL_AGENT_LEASE}=true"

# Where the webhook explains itself on the pod.
ANNOTATION_DECISION: Final = f"{PREFIX}decision"
# A pod may ask to be narrowed to where a stronger mode holds ("require") or not ("none");
# absent, its policy's steering applies (the built-in policy never narrows).
ANNOTATION_STEERING: Final = f"{PREFIX}steering"

# Extended resources as the NVIDIA device plugin advertises them.
RESOURCE_GPU: Final = "nvidia.com/gpu"
RESOURCE_MIG_PREFIX: Final = "nvidia.com/mig-"


def mig_resource(profile: str) -> str:
    """The extended-resource name a MIG profile is scheduled as (mixed strategy)."""
    return f"{RESOURCE_MIG_PREFIX}{profile}"


def is_gpu_resource(name: str) -> bool:
    """True for the resources maxtune reasons about: whole GPUs and MIG slices."""
    return name == RESOURCE_GPU or name.startswith(RESOURCE_MIG_PREFIX)
