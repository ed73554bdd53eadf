"""Build the Dockerfile's targets, or reuse them: one image per target per inputs digest.

Each image is tagged `localhost/maxtune-<target>:in-<digest>` (context.inputs_digest: the
Dockerfile, .dockerignore, the build context and the base image's ID) and
`localhost/maxtune-<target>:<version>` (pyproject's version; what the README pushes). An image
whose `in-` tag exists is reused as it is; building one removes the older `in-` images of that
target first, every name of them (the agent's is several GB, and vfs stores each layer as a full
copy), and checks the disk has room for the build (room.py) before buildah starts.

RUN steps see the host's CA bundle and /etc/pip.conf, mounted read-only for the build only
(never committed): pip inside the build then trusts what the host's pip trusts (a TLS-inspecting
proxy, a private index). The images themselves carry Debian's CA list only.
"""

from __future__ import annotations

import fcntl
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from imagebuild.base import RECIPE, Recipe, build_base
from imagebuild.base import REPOSITORY as BASE_REPOSITORY
from imagebuild.buildah import ISOLATION, Buildah, BuildahError, Image
from imagebuild.context import DOCKERFILE, ROOT, inputs_digest
from imagebuild.room import explain, shortfalls

TARGETS = ("operator", "agent")
INPUTS_LABEL = "io.maxtune.inputs"
HOST_TRUST = (Path("/etc/ssl/certs/ca-certificates.crt"), Path("/etc/pip.conf"))
LOGS = ROOT / ".run" / "images"
LOCK = Path(tempfile.gettempdir()) / "maxtune-images.lock"
BUILD_TIMEOUT_S = 3600

Rebuild = Literal["none", "images", "all"]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Built:
    """One image made or found: what it is, whether it was reused, how long it took."""

    what: str
    name: str
    image: Image
    reused: bool
    seconds: float


def repository(target: str) -> str:
    return f"localhost/maxtune-{target}"


def version(root: Path = ROOT) -> str:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    return str(project["version"])


@contextmanager
def _locked() -> Iterator[None]:
    """One build at a time on this machine (pytest workers, two checkouts share the storage)."""
    with LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_base(
    buildah: Buildah, *, rebuild: bool = False, recipe: Recipe = RECIPE, log: Path
) -> Built:
    """The base image of `recipe`: the one in local storage, or a new one."""
    started = time.monotonic()
    name = recipe.name()
    found = buildah.image(name)
    if found is not None and not rebuild:
        return Built("base", name, found, reused=True, seconds=time.monotonic() - started)
    if found is not None:
        buildah.remove(name)
    made = build_base(buildah, recipe, log)
    _drop_older(buildah, BASE_REPOSITORY, keep=name)
    return Built("base", name, made, reused=False, seconds=time.monotonic() - started)


def ensure_image(
    target: str, buildah: Buildah, base: Built, *, rebuild: bool = False, log: Path
) -> Built:
    """The `target` image of these inputs: the one in local storage, or a new one."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}: the Dockerfile builds {TARGETS}")
    started = time.monotonic()
    digest = inputs_digest(target, base.image.id)
    name = f"{repository(target)}:in-{digest[:16]}"
    found = buildah.image(name)
    if found is not None and not rebuild:
        return Built(target, name, found, reused=True, seconds=time.monotonic() - started)
    # The older images of this target go first, all their names with them (the version tag
    # kept an old agent image alive through the build: 5.6 GB the build itself needed).
    for older in buildah.names(repository(target)):
        buildah.remove(older)
    short = shortfalls(target)
    if short:
        raise BuildahError(explain(target, short))
    volumes = [f"--volume={p}:{p}:ro" for p in HOST_TRUST if p.is_file()]
    buildah.run(
        "bud",
        "--isolation",
        ISOLATION,
        "--pull=never",
        "--layers=false",
        "--force-rm",
        "--file",
        str(ROOT / DOCKERFILE),
        "--target",
        target,
        "--build-arg",
        f"PYTHON_IMAGE={base.name}",
        "--label",
        f"{INPUTS_LABEL}={digest}",
        *volumes,
        "--tag",
        name,
        str(ROOT),
        log=log,
        timeout_s=BUILD_TIMEOUT_S,
    )
    buildah.tag(name, f"{repository(target)}:{version()}")
    made = buildah.image(name)
    assert made is not None, f"{name} was built but is not in local storage"
    return Built(target, name, made, reused=False, seconds=time.monotonic() - started)


def _drop_older(buildah: Buildah, repo: str, *, keep: str) -> None:
    """Untag this repository's other inputs-keyed images (an image goes with its last name)."""
    tag_prefix = f"{repo}:in-" if repo != BASE_REPOSITORY else f"{repo}:"
    for name in buildah.names(repo):
        if name != keep and name.startswith(tag_prefix):
            buildah.remove(name)


def ensure(
    targets: tuple[str, ...] = TARGETS,
    *,
    rebuild: Rebuild = "none",
    buildah: Buildah | None = None,
    progress: Progress = print,
) -> list[Built]:
    """The base and each target, built when their inputs changed (or when `rebuild` says so)."""
    buildah = buildah or Buildah()
    LOGS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results: list[Built] = []
    with _locked():
        log = LOGS / f"{stamp}-base.log"
        base = ensure_base(buildah, rebuild=rebuild == "all", log=log)
        progress(describe(base, log))
        results.append(base)
        for target in targets:
            log = LOGS / f"{stamp}-{target}.log"
            built = ensure_image(target, buildah, base, rebuild=rebuild != "none", log=log)
            progress(describe(built, log))
            results.append(built)
    return results


def describe(built: Built, log: Path) -> str:
    how = "reused" if built.reused else f"built (log: {log})"
    size = built.image.size / 1e6
    return f"{built.what:9} {built.name}  {size:,.0f} MB  {how} in {built.seconds:.1f} s"
