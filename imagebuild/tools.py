"""buildah and mmdebstrap, installed from Debian with apt-get when missing (CI runs as root).

`make tools` calls this before the tests, as it builds the control-plane binaries: a fresh
Debian machine gets both packages (about 30 s), a machine that has them pays one `which`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable

PACKAGES = ("buildah", "mmdebstrap")


class ToolsError(RuntimeError):
    """The image tools are missing and could not be installed here."""


def missing() -> list[str]:
    return [name for name in PACKAGES if shutil.which(name) is None]


def install(progress: Callable[[str], None] = print) -> list[str]:
    """Install what is missing; returns what was installed. Needs root and apt-get."""
    needed = missing()
    if not needed:
        return []
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ToolsError(
            f"{', '.join(needed)} missing: install them (Debian/Ubuntu: "
            f"apt-get install {' '.join(needed)}) or run this as root on a Debian machine"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install_argv = ["apt-get", "install", "-y", "-q", *needed]
    progress(f"installing {' '.join(needed)} with apt-get")
    done = subprocess.run(install_argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:  # stale or absent package lists on a fresh machine
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        done = subprocess.run(install_argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0 or missing():
        raise ToolsError(f"apt-get install {' '.join(needed)} failed:\n{done.stderr[-2000:]}")
    return needed
