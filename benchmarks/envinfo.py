"""What a result was measured on: machine, load, versions, code.

Numbers from a shared 2-core machine mean little without the load they ran
under, so every run records the load average before and after, how busy the
whole machine was (psutil), and the exact code (git commit, and whether the
operator's sources had uncommitted changes).
"""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from benchmarks.procstat import load_average
from maxtune_dev.localplane.build import Binaries

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("aiohttp", "kopf", "kubernetes", "prometheus-client", "pydantic", "psutil")


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.rstrip("\n")
    except (OSError, subprocess.CalledProcessError):
        return ""


def code_state() -> dict[str, Any]:
    paths = ("operator", "core/maxtune/contract", "core/maxtune/localplane", "benchmarks")
    dirty = _git("status", "--porcelain", "--", *paths)
    return {
        "commit": _git("rev-parse", "--short=12", "HEAD").strip(),
        "uncommitted_changes": sorted(line[3:] for line in dirty.splitlines()),
    }


def environment(binaries: Binaries) -> dict[str, Any]:
    memory = psutil.virtual_memory().total
    return {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "cores": psutil.cpu_count(logical=True),
            "memory_gib": round(memory / 2**30, 1),
            "kernel": platform.release(),
            "arch": platform.machine(),
        },
        "load_average_start": load_average(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "control_plane": dict(binaries.versions),
        "code": code_state(),
        "command": " ".join([Path(sys.executable).name, *sys.orig_argv[1:]]),
    }


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"
