"""Recipes checked against the installed torch.

Each recipe must reproduce exactly its mode's config patch
(`torch._inductor.list_mode_options(mode)`) when its environment is set before
torch is imported, and every variable maxtune may write must be one torch reads.
Each case runs in a fresh interpreter because inductor reads the environment
once, at import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from maxtune.contract import compilecache
from maxtune.contract.modes import DEFAULT_RECIPES, INDUCTOR_ENV, Mode

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.slow]

_DUMP = """
import json, torch._inductor as ind, torch._inductor.config as c
modes = {m: ind.list_mode_options(m) for m in ("default", "max-autotune",
         "max-autotune-no-cudagraphs")}
cfg = {k: v for k, v in c.get_config_copy().items()
       if isinstance(v, (bool, int, float, str, type(None)))}
print(json.dumps({"config": cfg, "modes": modes}))
"""


def _inductor_config(env: dict[str, str]) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TORCHINDUCTOR_")}
    out = subprocess.run(
        [sys.executable, "-c", _DUMP],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def baseline() -> dict[str, object]:
    return _inductor_config({})


@pytest.mark.parametrize("mode", list(Mode))
def test_recipe_reproduces_mode_patch(baseline: dict[str, object], mode: Mode) -> None:
    before: dict[str, object] = baseline["config"]  # type: ignore[assignment]
    after: dict[str, object] = _inductor_config(dict(DEFAULT_RECIPES[mode]))["config"]  # type: ignore[assignment]
    changed = {k: after[k] for k in after if after[k] != before.get(k)}
    wanted: dict[str, object] = baseline["modes"][mode.value]  # type: ignore[index]
    # Keys the mode sets to their default value do not show as a change.
    wanted_changes = {k: v for k, v in wanted.items() if before.get(k) != v}
    assert changed == wanted_changes
    for key, value in wanted.items():
        assert after[key] == value, f"{mode}: {key} should be {value}"


def _torch_sources() -> list[Path]:
    root = Path(torch.__file__).parent
    return [*root.joinpath("_inductor").rglob("*.py"), *root.joinpath("lib").glob("libtorch*.so")]


@pytest.mark.parametrize("name", sorted(INDUCTOR_ENV))
def test_every_known_variable_is_read_by_installed_torch(name: str) -> None:
    needle = name.encode()
    found = [p for p in _torch_sources() if needle in p.read_bytes()]
    assert found, f"{name} does not appear in the installed torch {torch.__version__}"


def test_recipes_only_use_known_variables() -> None:
    for mode, env in DEFAULT_RECIPES.items():
        assert set(env) <= INDUCTOR_ENV, mode


def test_compile_cache_switches_turn_on_torchs_remote_caches(baseline: dict[str, object]) -> None:
    """The switches the webhook hands out and the agent proves (contract.compilecache) are ones
    torch reads, and with them set, exactly the FX graph remote cache turns on: not the
    autotune or AOTAutograd remote caches, which fail a compile or a training step when the
    server hangs (decision 0030)."""
    before: dict[str, object] = baseline["config"]  # type: ignore[assignment]
    env = {**compilecache.SWITCHES, compilecache.URL_VAR: "redis://u:p@127.0.0.1:1"}
    after: dict[str, object] = _inductor_config(env)["config"]  # type: ignore[assignment]
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {"fx_graph_remote_cache"}
    assert after["fx_graph_remote_cache"] is True
    assert after["autotune_remote_cache"] is None and after["bundled_autotune_remote_cache"] is None
