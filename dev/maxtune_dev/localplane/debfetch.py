"""Debian packages fetched without root and without touching the system.

`apt-get download` fetches the .debs into a temporary folder (apt's own lists, or a private copy
of them refreshed with `apt-get update` when the system has none); they are unpacked into
`.cache/bin/<name>-<version>/` and later runs reuse that folder. Nothing is installed: no
postinst, no system user, no service. Each tool names an environment variable that points at a
binary to use instead.

Used for Debian's Prometheus (the demo and the end-to-end test) and Debian's redis-server (the
compile-cache tests). `unpack` reads the .deb itself (an `ar` archive holding `data.tar.*`) when
dpkg is not there, so a machine without dpkg (a GPU box the lead carries the .debs to) unpacks
them the same way.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from maxtune_dev.localplane import paths

Progress = Callable[[str], None]
# Written last: a folder without it is an older or interrupted fetch, fetched again.
COMPLETE = ".maxtune-complete"
_VERSION_SAFE = re.compile(r"^[A-Za-z0-9.+~:-]+$")
_AR_MAGIC = b"!<arch>\n"


class FetchError(RuntimeError):
    """A Debian package could not be fetched; the message says what was tried and how to fix it."""


@dataclass(frozen=True)
class DebianTool:
    """One binary from Debian: its package, the packages unpacked beside it, and an override."""

    name: str  # cache folder prefix
    package: str  # the package whose version names the folder
    binary: str  # path of the binary inside the unpacked folder
    env: str  # environment variable naming a binary to use instead
    known_version: str  # what was tested; another candidate apt offers gets a folder of its own
    extra_packages: tuple[str, ...] = ()
    hint: str = ""  # what to set the override to, for error messages


def quiet(_: str) -> None:
    return None


def folder_version(version: str) -> str:
    """Debian's version without characters that break PATH-like variables (the epoch's ':')."""
    return version.replace(":", "_")


def cache_folder(tool: DebianTool, version: str) -> Path:
    return paths.cache_dir() / "bin" / f"{tool.name}-{folder_version(version)}"


def _run(argv: Sequence[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def _candidate(package: str, apt_options: Sequence[str]) -> str | None:
    """The version apt would fetch, or None when its lists do not know the package."""
    if shutil.which("apt-cache") is None:
        return None
    done = _run(["apt-cache", *apt_options, "policy", package])
    match = re.search(r"Candidate:\s*(\S+)", done.stdout)
    if done.returncode != 0 or match is None or match.group(1) == "(none)":
        return None
    return match.group(1)


def _cached(tool: DebianTool, version: str | None) -> Path | None:
    if version is not None:
        folder = cache_folder(tool, version)
        return folder / tool.binary if (folder / COMPLETE).is_file() else None
    # No apt to ask (or no lists): any version fetched before will do.
    found = sorted((paths.cache_dir() / "bin").glob(f"{tool.name}-*/{COMPLETE}"))
    return found[-1].parent / tool.binary if found else None


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


def download(
    packages: Sequence[str], work: Path, progress: Progress = quiet
) -> tuple[str, list[Path]]:
    """`apt-get download` of the packages into `work`: the first one's version and the .debs
    (the first package's first)."""
    main_package = packages[0]
    options: list[str] = []
    version = _candidate(main_package, options)
    if version is None:
        options = _private_lists(work, progress)
        version = _candidate(main_package, options)
        if version is None:
            raise FetchError(
                f"apt knows no package {main_package!r} (is a Debian or Ubuntu archive "
                "configured in /etc/apt/sources.list?)"
            )
    progress(f"apt-get download {' '.join(packages)} ({main_package} {version})")
    argv = ["apt-get", *options, "-o", f"Dir::Cache::archives={work}", "download"]
    done = _run([*argv, *packages], cwd=work)
    main = sorted(work.glob(f"{main_package}_*.deb"))
    if done.returncode != 0 or not main:
        raise FetchError(f"apt-get download {main_package} failed:\n{done.stderr[-2000:]}")
    return version, main + sorted(set(work.glob("*.deb")) - set(main))


def _ar_members(data: bytes) -> dict[str, bytes]:
    """The members of an `ar` archive (the container format of a .deb)."""
    if not data.startswith(_AR_MAGIC):
        raise FetchError("not a Debian package (no ar header)")
    members: dict[str, bytes] = {}
    offset = len(_AR_MAGIC)
    while offset + 60 <= len(data):
        header = data[offset : offset + 60]
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        start = offset + 60
        members[name] = data[start : start + size]
        offset = start + size + (size % 2)  # members are 2-byte aligned
    return members


def unpack_python(deb: Path, target: Path) -> None:
    """What `dpkg -x` does, in Python: extract data.tar.{xz,gz,bz2} with the tar 'data' filter
    (no absolute paths, nothing outside `target`, no device files)."""
    members = _ar_members(deb.read_bytes())
    data = next((members[n] for n in members if n.startswith("data.tar")), None)
    if data is None:
        raise FetchError(f"{deb.name}: no data.tar member in the package")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            archive.extractall(target, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise FetchError(f"{deb.name}: cannot unpack its data.tar: {exc}") from exc


def unpack(deb: Path, target: Path) -> None:
    """`dpkg -x` where dpkg exists, else the same in Python."""
    target.mkdir(parents=True, exist_ok=True)
    if shutil.which("dpkg") is None:
        unpack_python(deb, target)
        return
    done = _run(["dpkg", "-x", str(deb), str(target)])
    if done.returncode != 0:
        raise FetchError(f"dpkg -x {deb.name} failed:\n{done.stderr[-2000:]}")


def unpack_all(debs: Sequence[Path], target: Path, binary: str) -> Path:
    """Unpack the .debs into `target` whole or not at all; returns the binary's path."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for deb in debs:
            unpack(deb, staging)
        if not (staging / binary).exists():
            raise FetchError(f"no {binary} in {', '.join(d.name for d in debs)}")
        (staging / COMPLETE).write_text(" ".join(d.name for d in debs) + "\n")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)  # whole or nothing: an interrupted fetch leaves no half folder
    return target / binary


def ensure(tool: DebianTool, progress: Progress = quiet) -> Path:
    """The tool's binary: from its environment variable, the cache, or fetched into the cache."""
    override = os.environ.get(tool.env)
    if override:
        binary = Path(override)
        if not binary.is_file():
            raise FetchError(f"{tool.env}={override}: no such file")
        return binary
    if shutil.which("apt-get") is None:
        cached = _cached(tool, None)
        if cached is not None:
            return cached
        raise FetchError(
            f"no apt-get on this machine to fetch Debian's {tool.package}: "
            f"set {tool.env}={tool.hint or '/path/to/binary'}"
        )
    version = _candidate(tool.package, []) or tool.known_version
    cached = _cached(tool, version)
    if cached is not None:
        return cached
    lock = paths.cache_dir() / "bin" / f".{tool.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # a concurrent run may be fetching it right now
        cached = _cached(tool, version)
        return cached if cached is not None else _fetch(tool, progress)


def _fetch(tool: DebianTool, progress: Progress) -> Path:
    with tempfile.TemporaryDirectory(prefix=f"maxtune-{tool.name}-") as tmp:
        try:
            version, debs = download([tool.package, *tool.extra_packages], Path(tmp), progress)
        except FetchError as exc:
            raise FetchError(f"{exc}\nor set {tool.env}={tool.hint or '/path/to/binary'}") from exc
        if not _VERSION_SAFE.match(version):
            raise FetchError(f"unexpected version string from apt: {version!r}")
        target = cache_folder(tool, version)
        if (target / COMPLETE).is_file():  # the private lists named a version we have
            return target / tool.binary
        binary = unpack_all(debs, target, tool.binary)
    progress(f"{tool.package} {version} unpacked into {target}")
    return binary
