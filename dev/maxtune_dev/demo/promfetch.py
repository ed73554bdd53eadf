"""Debian's Prometheus, fetched without root and without touching the system.

`apt-get download` fetches the .deb into a temporary folder (apt's own lists, or a private copy
of them refreshed with `apt-get update` when the system has none), `dpkg -x` unpacks it into
`.cache/bin/prometheus-<version>/`, and later runs reuse that folder. Nothing is installed:
no postinst, no system user, no service. `MAXTUNE_PROMETHEUS` names a binary to use instead.

Debian's web UI links its JavaScript and fonts from other packages (relative symlinks into
/usr/share/javascript); those few small packages are unpacked into the same folder, so the UI
works for a person looking at the demo. The tests only use the HTTP API.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from maxtune_dev.localplane import paths

PACKAGE = "prometheus"
# What the demo was made with (Debian bookworm). Another candidate version is used if apt
# offers one, in a cache folder of its own.
KNOWN_VERSION = "2.42.0+ds-5+deb12u1"
BINARY_ENV = "MAXTUNE_PROMETHEUS"
_BINARY = Path("usr/bin/prometheus")
# Written last: a folder without it is an older or interrupted fetch, fetched again.
_COMPLETE = ".maxtune-complete"
# Packages whose files the web UI's symlinks point at (prometheus's Depends, and theirs).
WEB_ASSETS = (
    "fonts-glyphicons-halflings",
    "libjs-bootstrap4",
    "libjs-d3",
    "libjs-eonasdan-bootstrap-datetimepicker",
    "libjs-jquery",
    "libjs-jquery-hotkeys",
    "libjs-moment",
    "libjs-moment-timezone",
    "libjs-mustache",
    "libjs-popper.js",
    "libjs-rickshaw",
)
_VERSION_SAFE = re.compile(r"^[A-Za-z0-9.+~:-]+$")

Progress = Callable[[str], None]


class FetchError(RuntimeError):
    """Prometheus could not be fetched; the message says what was tried and how to fix it."""


def _quiet(_: str) -> None:
    return None


def cache_folder(version: str) -> Path:
    return paths.cache_dir() / "bin" / f"{PACKAGE}-{version}"


def _run(argv: Sequence[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def _candidate(apt_options: Sequence[str]) -> str | None:
    """The version apt would fetch, or None when its lists do not know the package."""
    if shutil.which("apt-cache") is None:
        return None
    done = _run(["apt-cache", *apt_options, "policy", PACKAGE])
    match = re.search(r"Candidate:\s*(\S+)", done.stdout)
    if done.returncode != 0 or match is None or match.group(1) == "(none)":
        return None
    return match.group(1)


def _cached(version: str | None) -> Path | None:
    if version is not None:
        folder = cache_folder(version)
        return folder / _BINARY if (folder / _COMPLETE).is_file() else None
    # No apt to ask (or no lists): any version fetched before will do.
    found = sorted((paths.cache_dir() / "bin").glob(f"{PACKAGE}-*/{_COMPLETE}"))
    return found[-1].parent / _BINARY if found else None


def _private_lists(work: Path, progress: Progress) -> list[str]:
    """apt options for lists of our own, refreshed from the system's sources (no root needed)."""
    lists = work / "lists"
    (lists / "partial").mkdir(parents=True)
    cache = work / "apt-cache"
    (cache / "archives" / "partial").mkdir(parents=True)
    options = [
        "-o",
        f"Dir::State::Lists={lists}",
        "-o",
        f"Dir::Cache={cache}",
        "-o",
        "Debug::NoLocking=1",
    ]
    progress("apt has no package lists here: apt-get update into a private folder")
    done = _run(["apt-get", *options, "update"])
    if done.returncode != 0:
        raise FetchError(f"apt-get update (private lists) failed:\n{done.stderr[-2000:]}")
    return options


def _download(work: Path, progress: Progress) -> tuple[str, list[Path]]:
    """The .debs in `work` (Prometheus first, then its web assets), and Prometheus's version."""
    options: list[str] = []
    version = _candidate(options)
    if version is None:
        options = _private_lists(work, progress)
        version = _candidate(options)
        if version is None:
            raise FetchError(
                f"apt knows no package {PACKAGE!r} (is a Debian or Ubuntu archive configured "
                f"in /etc/apt/sources.list?); or set {BINARY_ENV}=/path/to/prometheus"
            )
    progress(f"apt-get download {PACKAGE} ({version}) and {len(WEB_ASSETS)} web UI asset packages")
    argv = ["apt-get", *options, "-o", f"Dir::Cache::archives={work}", "download"]
    done = _run([*argv, PACKAGE, *WEB_ASSETS], cwd=work)
    main = sorted(work.glob(f"{PACKAGE}_*.deb"))
    if done.returncode != 0 or not main:
        raise FetchError(f"apt-get download {PACKAGE} failed:\n{done.stderr[-2000:]}")
    return version, main + sorted(set(work.glob("*.deb")) - set(main))


def ensure_prometheus(progress: Progress = _quiet) -> Path:
    """The prometheus binary: from the environment, the cache, or fetched into the cache now."""
    override = os.environ.get(BINARY_ENV)
    if override:
        binary = Path(override)
        if not binary.is_file():
            raise FetchError(f"{BINARY_ENV}={override}: no such file")
        return binary
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        cached = _cached(None)
        if cached is not None:
            return cached
        raise FetchError(
            f"no apt-get/dpkg on this machine to fetch Debian's {PACKAGE}: "
            f"set {BINARY_ENV}=/path/to/prometheus (2.x)"
        )
    version = _candidate([]) or KNOWN_VERSION
    cached = _cached(version)
    if cached is not None:
        return cached
    lock = paths.cache_dir() / "bin" / f".{PACKAGE}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # a concurrent run may be fetching it right now
        cached = _cached(version)
        return cached if cached is not None else _fetch(progress)


def _fetch(progress: Progress) -> Path:
    with tempfile.TemporaryDirectory(prefix="maxtune-prometheus-") as tmp:
        work = Path(tmp)
        version, debs = _download(work, progress)
        if not _VERSION_SAFE.match(version):
            raise FetchError(f"unexpected version string from apt: {version!r}")
        target = cache_folder(version)
        if (target / _COMPLETE).is_file():  # the private lists named a version we have
            return target / _BINARY
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        for deb in debs:
            done = _run(["dpkg", "-x", str(deb), str(staging)])
            if done.returncode != 0:
                shutil.rmtree(staging, ignore_errors=True)
                raise FetchError(f"dpkg -x {deb.name} failed:\n{done.stderr[-2000:]}")
        if not (staging / _BINARY).is_file():
            shutil.rmtree(staging, ignore_errors=True)
            raise FetchError(f"no {_BINARY} in {debs[0].name}")
        (staging / _COMPLETE).write_text(" ".join(d.name for d in debs) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)  # whole or nothing: an interrupted fetch leaves no half folder
    progress(f"{PACKAGE} {version} unpacked into {target}")
    return target / _BINARY


def ensure_promtool(progress: Progress = _quiet) -> Path:
    """promtool, from the same package (and folder) as the prometheus binary."""
    prometheus = ensure_prometheus(progress)
    promtool = prometheus.with_name("promtool")
    if not promtool.is_file():
        raise FetchError(f"no promtool next to {prometheus} (Debian's {PACKAGE} package has both)")
    return promtool


def version_of(binary: Path) -> str:
    """`prometheus --version`'s first line (e.g. "prometheus, version 2.42.0+ds ...")."""
    done = _run([str(binary), "--version"])
    lines = (done.stdout or done.stderr).splitlines()
    return lines[0].strip() if lines else "unknown"
