"""The local base image: a Debian bookworm root file system made by mmdebstrap, no registry.

The Dockerfile's stages start `FROM ${PYTHON_IMAGE}` (python:3.11-slim-bookworm for anyone
with a registry). This machine pulls from no registry, so `make image` passes a base made here
instead: Debian's own python3 (3.11, the version the pins were resolved with) and exactly what
the Dockerfile's RUN steps call: `python` (python-is-python3), `python -m venv` (python3-venv),
`python -m pip wheel` (python3-pip), groupadd/useradd (passwd), apt-get (the agent's gcc), and
CA certificates for pip. Documentation, manuals and translations are left out (copyright
files stay), as Debian's slim images do.

The recipe below is the base's whole input: its digest names the image, so changing a package
or a mirror builds a new base, and an unchanged recipe reuses the one already built (run
`python -m imagebuild build --rebuild all` to take Debian's newer packages).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from imagebuild.buildah import Buildah, BuildahError, Image
from imagebuild.logged import run_logged

REPOSITORY = "localhost/maxtune-base"
RECIPE_LABEL = "io.maxtune.base-recipe"


@dataclass(frozen=True)
class Recipe:
    suite: str = "bookworm"
    variant: str = "apt"
    mirrors: tuple[str, ...] = (
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    )
    packages: tuple[str, ...] = (
        "python3",
        "python3-venv",
        "python3-pip",
        "python-is-python3",
        "passwd",
        "ca-certificates",
    )
    dpkg_options: tuple[str, ...] = (
        "path-exclude=/usr/share/doc/*",
        "path-include=/usr/share/doc/*/copyright",
        "path-exclude=/usr/share/man/*",
        "path-exclude=/usr/share/info/*",
        "path-exclude=/usr/share/locale/*",
    )
    # The Python image's run-time settings that the Dockerfile relies on.
    env: tuple[str, ...] = (
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG=C.UTF-8",
    )

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def name(self) -> str:
        return f"{REPOSITORY}:{self.suite}-{self.digest()[:16]}"

    def mmdebstrap_argv(self, tarball: Path) -> list[str]:
        argv = [
            "mmdebstrap",
            f"--variant={self.variant}",
            # usr-merged without the usrmerge package (which would pull in perl)
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
            f"--include={','.join(self.packages)}",
        ]
        argv += [f"--dpkgopt={option}" for option in self.dpkg_options]
        return [*argv, self.suite, str(tarball), *self.mirrors]


RECIPE = Recipe()


def build_base(buildah: Buildah, recipe: Recipe, log: Path) -> Image:
    """mmdebstrap a tarball, then `buildah from scratch` + add + config + commit."""
    with tempfile.TemporaryDirectory(prefix="maxtune-base-") as scratch:
        tarball = Path(scratch) / "rootfs.tar"
        code = run_logged(recipe.mmdebstrap_argv(tarball), log, timeout_s=1800)
        if code != 0:
            tail = log.read_text(errors="replace")[-3000:]
            raise BuildahError(f"mmdebstrap exited {code} (log: {log}):\n{tail}")
        working = f"maxtune-base-{int(time.time())}"
        buildah.run("from", "--name", working, "scratch", log=log)
        try:
            buildah.run("add", working, str(tarball), "/", log=log, timeout_s=1200)
            options = [item for pair in recipe.env for item in ("--env", pair)]
            buildah.run(
                "config",
                *options,
                "--cmd",
                "python3",
                "--label",
                f"{RECIPE_LABEL}={recipe.digest()}",
                working,
                log=log,
            )
            buildah.run("commit", "--rm", working, recipe.name(), log=log, timeout_s=1200)
        except BuildahError:
            subprocess.run(buildah.argv("rm", working), capture_output=True, check=False)
            raise
    image = buildah.image(recipe.name())
    assert image is not None, f"{recipe.name()} was committed but is not in local storage"
    return image
