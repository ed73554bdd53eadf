"""Which AutotunePolicy applies, and what its recipes say.

Policies are cluster-scoped. A pod's namespace picks the policy that lists it
(most specific wins, then name order); the policy named `default`, or one that
lists no namespaces, covers the rest; with none at all the built-in defaults
apply. Node labels use the cluster-wide policy (the one without namespaces).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from maxtune.contract.gate import NEWEST_KNOWN
from maxtune.contract.models import AutotunePolicy, PolicySpec
from maxtune.contract.modes import DEFAULT_RECIPES, Mode
from maxtune.contract.names import DEFAULT_POLICY_NAME

BUILTIN = AutotunePolicy.model_validate({"metadata": {"name": "builtin"}})


def cluster_policy(policies: Iterable[AutotunePolicy]) -> AutotunePolicy:
    """The policy that governs node labels: `default`, else the first without namespaces."""
    ordered = sorted(policies, key=lambda p: p.metadata.name)
    for policy in ordered:
        if policy.metadata.name == DEFAULT_POLICY_NAME:
            return policy
    for policy in ordered:
        if not policy.spec.namespaces:
            return policy
    return BUILTIN


def policy_for_namespace(policies: Iterable[AutotunePolicy], namespace: str) -> AutotunePolicy:
    candidates = sorted(policies, key=lambda p: (len(p.spec.namespaces), p.metadata.name))
    for policy in candidates:
        if namespace in policy.spec.namespaces:
            return policy
    return cluster_policy(candidates)


def torch_rule(spec: PolicySpec) -> str:
    return spec.torch.version or f"{NEWEST_KNOWN[0]}.{NEWEST_KNOWN[1]}"


def recipe(spec: PolicySpec, mode: Mode) -> Mapping[str, str]:
    """The environment for `mode`: the policy's override when it has one, else built-in."""
    override = spec.recipes.get(mode.value)
    return dict(override.env) if override is not None else dict(DEFAULT_RECIPES[mode])
