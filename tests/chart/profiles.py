"""Schema-valid GPUNodeProfile bodies, built from the contract models as an agent builds them.

Admission tests must send objects the CRD accepts: a request the schema refuses never reaches the
admission policy, and its 422 would pass for the policy's 403 in a careless assertion.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from maxtune.contract import gate
from maxtune.contract.assess import summarize
from maxtune.contract.gpuclass import gpu_class
from maxtune.contract.models import GateVerdict, Gpu, PolicySpec, ProfileStatus, Software
from maxtune.contract.names import API_VERSION, PROFILE_KIND, RESOURCE_GPU

TORCH = "2.11"


def status(product: str, sm_count: int, count: int = 1) -> dict[str, Any]:
    """The status of a node with `count` whole GPUs of `sm_count` SMs, inventory level."""
    found = gate.verdict(sm_count=sm_count, torch_version=TORCH)
    gpus = [
        Gpu(
            index=i,
            uuid=f"GPU-{sm_count}-{i}",
            product=product,
            memory_mib=81559,
            compute_capability="9.0",
            sm_count=sm_count,
            resource=RESOURCE_GPU,
            gpu_class=gpu_class(product, sm_count),
            verdict=GateVerdict(capable=found.capable, rule=found.rule, torch_version=TORCH),
        )
        for i in range(count)
    ]
    resources, summary = summarize(gpus, PolicySpec())
    return ProfileStatus(
        source="simulation",
        simulation="chart-tests",
        level="inventory",
        heartbeat_time=datetime.now(UTC),
        fingerprint=f"{product}-{count}",
        software=Software(agent_version="0.1.0", torch_version=TORCH),
        gpus=gpus,
        resources=resources,
        summary=summary,
    ).wire()


def profile(node: str) -> dict[str, Any]:
    """A new profile as the agent creates it (the status follows through the subresource)."""
    return {
        "apiVersion": API_VERSION,
        "kind": PROFILE_KIND,
        "metadata": {"name": node},
        "spec": {"nodeName": node},
    }


SMALL = ("NVIDIA GeForce RTX 3070", 46)  # below the 68-SM gate: not capable
BIG = ("NVIDIA H100 80GB HBM3", 132)  # capable
