"""Test support shared by the tests and the benchmarks: one way to build a fleet, run the
operator and talk to the plane.

- `profiles`: GPU products and the GPUNodeProfiles agents would publish for them;
- `objects`: nodes, pods and AdmissionReviews as JSON bodies;
- `fleetstate`: a FleetState filled as the watches would fill it;
- `operator`: `maxtune operator` as a child process, its webhook PKI and registration;
- `promtext`: Prometheus text exposition parsed into samples.

The names below are the ones tests use most; the modules hold the rest.
"""

from maxtune_dev.testkit.fleetstate import Fleet, mixed_fleet
from maxtune_dev.testkit.objects import gpu_container, node, pod, review
from maxtune_dev.testkit.profiles import (
    A100,
    H100,
    L4,
    RTX3070,
    T4,
    TORCH,
    Product,
    allocatable,
    measurements,
    profile,
    profile_body,
    stale,
    status,
    verdict,
)

__all__ = [
    "A100",
    "H100",
    "L4",
    "RTX3070",
    "T4",
    "TORCH",
    "Fleet",
    "Product",
    "allocatable",
    "gpu_container",
    "measurements",
    "mixed_fleet",
    "node",
    "pod",
    "profile",
    "profile_body",
    "review",
    "stale",
    "status",
    "verdict",
]
