"""Disk room for a build, checked before buildah starts instead of discovered 100 s into it.

With the vfs driver a build holds three copies of the new image at its peak: the working
container (a full copy of the base plus every RUN step's files), the layer blob that the commit
stages under the big-files temporary directory (TMPDIR, else /var/tmp), and the committed layer
in storage. For the agent (CUDA torch, about 5.6 GB) that is about 17 GB; a machine that ran out
halfway leaves a failed build and a full disk, so the check comes first and names both places.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

STORAGE = Path("/var/lib/containers/storage")
GB = 1e9

# What each target's image weighs, with headroom (measured: operator 350 MB, agent 5.57 GB).
IMAGE_GB = {"operator": 0.6, "agent": 6.0}


def big_files_dir() -> Path:
    """Where containers/image stages blobs: buildah honours TMPDIR, else uses /var/tmp."""
    return Path(os.environ.get("TMPDIR") or "/var/tmp")


@dataclass(frozen=True)
class Shortfall:
    """A place with less room than the build needs."""

    place: Path
    needed_gb: float
    free_gb: float


def _existing(path: Path) -> Path:
    """`path`, or its nearest existing parent (TMPDIR may not exist yet)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _device(path: Path) -> int:
    return _existing(path).stat().st_dev


def shortfalls(
    target: str,
    *,
    storage: Path = STORAGE,
    temp: Path | None = None,
    free_bytes: Callable[[Path], int] | None = None,
    device: Callable[[Path], int] = _device,
) -> list[Shortfall]:
    """Each filesystem that lacks room for `target`'s build: two copies in storage, one staged."""
    temp = temp or big_files_dir()
    free = free_bytes or (lambda p: shutil.disk_usage(_existing(p)).free)
    image = IMAGE_GB[target]
    if device(storage) == device(temp):
        needs = {storage: 3 * image}
    else:
        needs = {storage: 2 * image, temp: image}
    found = []
    for place, needed in needs.items():
        available = free(place) / GB
        if available < needed:
            found.append(Shortfall(place, needed, available))
    return found


def explain(target: str, short: list[Shortfall]) -> str:
    places = "; ".join(
        f"{s.place}: {s.free_gb:.1f} GB free, about {s.needed_gb:.0f} GB needed" for s in short
    )
    return (
        f"not enough disk to build the {target} image ({places}). With the vfs driver a build "
        "holds a working copy and the committed layer in storage and stages one more copy under "
        "TMPDIR (default /var/tmp). Free space there, or point TMPDIR at a larger disk."
    )
