"""Where the harness keeps binaries, build logs and cluster state.

Everything lives inside the checkout (git-ignored `.cache/` and `.run/`) so a
fresh clone on a machine that built before only relinks, and so that removing
the checkout removes every trace. Environment variables override both places
for CI caches or read-only checkouts.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "MAXTUNE_CACHE_DIR"
RUN_ENV = "MAXTUNE_RUN_DIR"
ROOT_ENV = "MAXTUNE_REPO_ROOT"


def repo_root() -> Path:
    """The checkout this package runs from, found by walking up to pyproject.toml.

    An editable install keeps the sources in the checkout, so walking up from
    this file finds it. A wheel install has no checkout: fall back to the
    current directory so the harness still works from wherever it is called.
    """
    override = os.environ.get(ROOT_ENV)
    if override:
        return Path(override).resolve()
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file() and (parent / "core").is_dir():
            return parent
    return Path.cwd().resolve()


def cache_dir() -> Path:
    """Root of the binary cache (`bin/`, `build/`, `logs/` below it)."""
    override = os.environ.get(CACHE_ENV)
    return Path(override).resolve() if override else repo_root() / ".cache"


def run_dir() -> Path:
    """Root of runtime state: named planes under `plane/`, throwaway ones under `tmp/`."""
    override = os.environ.get(RUN_ENV)
    return Path(override).resolve() if override else repo_root() / ".run"


def named_plane_dir(name: str) -> Path:
    """State folder of a detached plane started with `up --name NAME`."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"invalid plane name {name!r}: use a plain folder name")
    return run_dir() / "plane" / name
