"""torch.compile modes and the environment that reproduces each one.

No environment variable selects a mode: a mode is a patch of
`torch._inductor.config`. Each recipe here sets the variables that config reads
at import, so that a container gets the mode's patch without a code change.
tests/contract/test_recipes_vs_torch.py proves, against the installed torch,
that every variable is one torch reads and that each recipe yields exactly
`torch._inductor.list_mode_options(mode)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final


class Mode(StrEnum):
    """The modes maxtune recommends; the order is from safest to most aggressive."""

    DEFAULT = "default"
    MAX_AUTOTUNE_NO_CUDAGRAPHS = "max-autotune-no-cudagraphs"
    MAX_AUTOTUNE = "max-autotune"


# Modes that need the GEMM templates behind the is_big_gpu gate.
AUTOTUNE_MODES: Final = (Mode.MAX_AUTOTUNE_NO_CUDAGRAPHS, Mode.MAX_AUTOTUNE)

DEFAULT_RECIPES: Final[Mapping[Mode, Mapping[str, str]]] = MappingProxyType(
    {
        Mode.DEFAULT: MappingProxyType({}),
        Mode.MAX_AUTOTUNE_NO_CUDAGRAPHS: MappingProxyType(
            {
                "TORCHINDUCTOR_MAX_AUTOTUNE": "1",
                "TORCHINDUCTOR_COORDINATE_DESCENT_TUNING": "1",
            }
        ),
        Mode.MAX_AUTOTUNE: MappingProxyType(
            {
                "TORCHINDUCTOR_MAX_AUTOTUNE": "1",
                "TORCHINDUCTOR_COORDINATE_DESCENT_TUNING": "1",
                "TORCHINDUCTOR_CUDAGRAPHS": "1",
            }
        ),
    }
)

# Environment knobs that torch._inductor.config reads (torch 2.11-2.14). The
# webhook never writes a variable outside this set plus what a policy adds.
INDUCTOR_ENV: Final = frozenset(
    {
        "TORCHINDUCTOR_MAX_AUTOTUNE",
        "TORCHINDUCTOR_MAX_AUTOTUNE_GEMM",
        "TORCHINDUCTOR_MAX_AUTOTUNE_POINTWISE",
        "TORCHINDUCTOR_MAX_AUTOTUNE_GEMM_BACKENDS",
        "TORCHINDUCTOR_MAX_AUTOTUNE_GEMM_SEARCH_SPACE",
        "TORCHINDUCTOR_CUDAGRAPHS",
        "TORCHINDUCTOR_COORDINATE_DESCENT_TUNING",
        "TORCHINDUCTOR_FX_GRAPH_CACHE",
        "TORCHINDUCTOR_CACHE_DIR",
        "TORCHINDUCTOR_AUTOTUNE_REMOTE_CACHE",
        "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
    }
)


_RANK: Final[Mapping[Mode, int]] = MappingProxyType({mode: i for i, mode in enumerate(Mode)})


def strength(mode: Mode) -> int:
    """Rank used when several nodes disagree: the weakest mode holds everywhere."""
    return _RANK[mode]


def weakest(modes: list[Mode]) -> Mode:
    """The mode whose settings are valid on every node that recommends any of `modes`.

    Settings of a stronger mode are not valid where only a weaker one pays, and
    `default` is valid everywhere, so the common choice is the weakest.
    """
    return min(modes, key=strength) if modes else Mode.DEFAULT
