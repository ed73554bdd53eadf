"""Small Go programs of this repository's own (gosrc/), built once into the binary cache.

The benchmarks need a few tools that are not published modules, such as the
reference webhook (gosrc/refwebhook: Go's standard library only, so it builds
without the network). Each is built with the same `go` as the control plane
into `<cache>/bin/<name>-<digest>/`, the digest taken over its sources and the
Go version, so an edit rebuilds it and nothing else ever does.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from maxtune_dev.localplane import paths
from maxtune_dev.localplane.build import BuildError, _file_lock, _go_version, find_go, tail
from maxtune_dev.localplane.versions import GO_DIRECTIVE

SOURCES = Path(__file__).resolve().parent / "gosrc"


def _digest(source: Path, go_version: str) -> str:
    hasher = hashlib.sha256(go_version.encode())
    for path in sorted(source.rglob("*.go")):
        hasher.update(path.relative_to(source).as_posix().encode() + b"\0")
        hasher.update(path.read_bytes() + b"\0")
    return hasher.hexdigest()[:12]


def ensure_go_program(name: str, *, cache: Path | None = None) -> Path:
    """The path of the built program `gosrc/<name>`, building it the first time."""
    source = SOURCES / name
    if not source.is_dir():
        raise BuildError(f"{name}: find its sources", None, f"{source} does not exist")
    cache = cache or paths.cache_dir()
    go = find_go()
    digest = _digest(source, _go_version(go))
    final = cache / "bin" / f"{name}-{digest}"
    binary = final / name
    if (final / ".complete").is_file() and os.access(binary, os.X_OK):
        return binary
    with _file_lock(cache / "bin" / f".{name}.lock"):
        if (final / ".complete").is_file() and os.access(binary, os.X_OK):
            return binary
        work = cache / "build" / f"{name}-{digest}"
        log = cache / "logs" / f"{name}-{digest}.log"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        for path in source.rglob("*.go"):
            target = work / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        (work / "go.mod").write_text(f"module maxtune.local/{name}\n\ngo {GO_DIRECTIVE}\n")
        staging = final.with_name(f"{final.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with log.open("w") as handle:
            command = [go, "build", "-buildvcs=false", "-trimpath", "-ldflags", "-s -w"]
            done = subprocess.run(
                [*command, "-o", str(staging / name), "."],
                cwd=work,
                stdout=handle,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if done.returncode != 0:
            raise BuildError(f"{name}: go build", log, tail(log, 15))
        stamp = {"program": name, "digest": digest, "go": _go_version(go)}
        (staging / ".complete").write_text(json.dumps(stamp, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        shutil.rmtree(work, ignore_errors=True)
    return binary
