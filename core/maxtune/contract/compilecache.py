"""The switches that point a pod's torch at the shared compile cache (decision 0030).

One list for the webhook, which hands them to opted-in GPU containers, and the agent, whose
proof compiles with exactly these: a proof of anything else would not say whether pods are
served. Only torch's FX graph remote cache: it carries the compiled graph with max-autotune's
GEMM choices and the kernels, and it is the one remote cache whose failures torch contains. On
the H200 the autotune remote cache failed the compile and AOTAutograd's failed training when
the server hung (docs/benchmarks/compile-cache.md), so neither is here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

# The cache's address; the webhook sets it from the namespace's Secret (never in clear).
URL_VAR: Final = "TORCHINDUCTOR_REDIS_URL"
SWITCHES: Final[Mapping[str, str]] = MappingProxyType({"TORCHINDUCTOR_FX_GRAPH_REMOTE_CACHE": "1"})
