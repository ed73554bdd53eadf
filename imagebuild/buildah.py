"""buildah, as this project calls it: root, chroot isolation, one storage driver, no daemon.

No Docker engine runs here, and nested namespaces are not available, so every RUN step (and
every `buildah run`) uses `--isolation chroot`; overlay mounts are not available either, so
storage uses the `vfs` driver (each layer a plain copy: slower to commit, but it works
anywhere root does). Storage stays buildah's default (/var/lib/containers/storage) so a fresh
clone of the repository on a machine that built before finds its images, as Go's caches do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imagebuild.logged import run_logged

DRIVER = os.environ.get("MAXTUNE_IMAGE_STORAGE_DRIVER", "vfs")
ISOLATION = "chroot"


class BuildahError(RuntimeError):
    """A buildah command failed: the message holds its command line and the tail of its output."""


@dataclass(frozen=True)
class Image:
    """A local image: its ID, every name it carries, its labels and its size in bytes."""

    id: str
    names: tuple[str, ...]
    labels: dict[str, str]
    size: int


@dataclass(frozen=True)
class Buildah:
    driver: str = DRIVER

    def argv(self, *args: str) -> list[str]:
        return ["buildah", "--storage-driver", self.driver, *args]

    def run(
        self, *args: str, timeout_s: float = 600, log: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run buildah; output goes to `log` if given (long builds), else is captured."""
        argv = self.argv(*args)
        if log is None:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout_s, check=False
            )
            output = done.stdout + done.stderr
        else:
            code = run_logged(argv, log, timeout_s)
            done = subprocess.CompletedProcess(argv, code, "", "")
            output = log.read_text(errors="replace")
        if done.returncode != 0:
            where = f" (log: {log})" if log else ""
            raise BuildahError(
                f"{' '.join(argv[:6])} ... exited {done.returncode}{where}:\n{output[-3000:]}"
            )
        return done

    def image(self, ref: str) -> Image | None:
        """The local image `ref` names (a name or an ID), or None when there is none."""
        done = subprocess.run(
            self.argv("inspect", "--type", "image", ref),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            return None
        found = json.loads(done.stdout)
        image_id = str(found["FromImageID"])
        layers = json.loads(found["Manifest"]).get("layers", [])
        return Image(
            id=image_id,
            names=tuple(n for i, names in self._listing() if i == image_id for n in names),
            labels=dict(found["OCIv1"]["config"].get("Labels") or {}),
            size=sum(int(layer["size"]) for layer in layers),
        )

    def _listing(self) -> list[tuple[str, list[str]]]:
        """(image ID, its names) for every local image."""
        done = self.run("images", "--json", "--no-trunc", timeout_s=120)
        return [
            (str(item["id"]).removeprefix("sha256:"), [str(n) for n in item.get("names") or []])
            for item in json.loads(done.stdout or "[]") or []
        ]

    def names(self, repository: str) -> list[str]:
        """Every `repository:tag` name in local storage."""
        listed = [name for _, names in self._listing() for name in names]
        return sorted(name for name in listed if name.startswith(f"{repository}:"))

    def remove(self, name: str) -> None:
        """Untag `name`; the image goes once no name is left on it."""
        self.run("rmi", name, timeout_s=300)

    def tag(self, image_id: str, *names: str) -> None:
        self.run("tag", image_id, *names, timeout_s=120)

    @contextmanager
    def container(self, image: str, name: str) -> Iterator[Container]:
        """A working container of `image` (vfs: a full copy of it), removed afterwards."""
        self.run("from", "--pull-never", "--name", name, image, timeout_s=600)
        try:
            yield Container(self, name)
        finally:
            self.run("rm", name, timeout_s=300)


@dataclass(frozen=True)
class Container:
    buildah: Buildah
    name: str

    def argv(
        self, command: Sequence[str], *, volumes: Sequence[str] = (), network: str = "host"
    ) -> list[str]:
        """`buildah run` of `command` as the image's user, with its environment."""
        options = ["--isolation", ISOLATION, "--network", network]
        for volume in volumes:
            options += ["--volume", volume]
        return self.buildah.argv("run", *options, self.name, "--", *command)

    def run(self, *command: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `command` inside; the caller checks the exit status."""
        return subprocess.run(
            self.argv(command), capture_output=True, text=True, timeout=timeout_s, check=False
        )

    def mountpoint(self) -> Path:
        done = self.buildah.run("inspect", "--type", "container", self.name)
        return Path(json.loads(done.stdout)["MountPoint"])


def available() -> str | None:
    """None when images can be built here, else why not."""
    for tool in ("buildah", "mmdebstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (`make image-tools` installs it with apt-get, as root)"
    if os.geteuid() != 0:
        return "building images with buildah's chroot isolation needs root"
    return None
