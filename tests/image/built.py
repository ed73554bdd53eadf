"""The built images for tests: made (or reused) by imagebuild, run with `buildah run`.

A test that needs an image calls `require(...)`: it builds what is missing for the current
tree (as `make image` does; reused when `make test` built it already) or skips with the reason
when this machine cannot build images at all. `make test` sets MAXTUNE_REQUIRE_IMAGES=1, so on
CI a machine that cannot build fails instead of skipping.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from imagebuild.build import Built, ensure
from imagebuild.buildah import Buildah, Container, available

REQUIRE_ENV = "MAXTUNE_REQUIRE_IMAGES"
CONTAINER_PREFIX = "maxtune-test-"


def require(*targets: str) -> dict[str, Built]:
    """The images of `targets` for this tree, by target (and "base")."""
    why_not = available()
    if why_not is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but images cannot be built here: {why_not}")
        pytest.skip(f"images cannot be built on this machine: {why_not}")
    return {built.what: built for built in ensure(targets, progress=print)}


@contextmanager
def container(image: Built, buildah: Buildah | None = None) -> Iterator[Container]:
    """A working container of `image`, named for this process; removed afterwards.

    vfs makes each container a full copy of its image (the agent's: GBs), so containers left
    by a test process that died are removed first.
    """
    buildah = buildah or Buildah()
    _remove_orphans(buildah)
    name = f"{CONTAINER_PREFIX}{image.what}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    with buildah.container(image.name, name) as made:
        yield made


def _remove_orphans(buildah: Buildah) -> None:
    listed = subprocess.run(
        buildah.argv("containers", "--format", "{{.ContainerName}}"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    for name in listed:
        if not name.startswith(CONTAINER_PREFIX):
            continue
        pid = name.removeprefix(CONTAINER_PREFIX).split("-")[1]
        if pid.isdigit() and not _alive(int(pid)):
            subprocess.run(buildah.argv("rm", name), capture_output=True, timeout=300, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
