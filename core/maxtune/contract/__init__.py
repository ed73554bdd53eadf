"""The contract both components import: names, models, the gate, modes, assessment.

Nothing in here touches a GPU, a cluster or torch, so the operator image can
carry it without the GPU stack.
"""

from maxtune.contract import names
from maxtune.contract.assess import node_labels, summarize
from maxtune.contract.gate import Vendor, Verdict, verdict
from maxtune.contract.models import AutotunePolicy, GPUNodeProfile, PolicySpec, ProfileStatus
from maxtune.contract.modes import Mode

__all__ = [
    "AutotunePolicy",
    "GPUNodeProfile",
    "Mode",
    "PolicySpec",
    "ProfileStatus",
    "Vendor",
    "Verdict",
    "names",
    "node_labels",
    "summarize",
    "verdict",
]
