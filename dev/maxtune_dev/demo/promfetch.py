"""Debian's Prometheus, fetched without root and without touching the system.

The fetching is `maxtune_dev.localplane.debfetch`'s (shared with Debian's redis-server): the .deb is
unpacked into `.cache/bin/prometheus-<version>/` and later runs reuse that folder.
`MAXTUNE_PROMETHEUS` names a binary to use instead.

Debian's web UI links its JavaScript and fonts from other packages (relative symlinks into
/usr/share/javascript); those few small packages are unpacked into the same folder, so the UI
works for a person looking at the demo. The tests only use the HTTP API.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from maxtune_dev.localplane import debfetch
from maxtune_dev.localplane.debfetch import FetchError, Progress

__all__ = ["FetchError", "cache_folder", "ensure_prometheus", "ensure_promtool", "version_of"]

PACKAGE = "prometheus"
# What the demo was made with (Debian bookworm). Another candidate version is used if apt
# offers one, in a cache folder of its own.
KNOWN_VERSION = "2.42.0+ds-5+deb12u1"
BINARY_ENV = "MAXTUNE_PROMETHEUS"
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
TOOL = debfetch.DebianTool(
    name=PACKAGE,
    package=PACKAGE,
    binary="usr/bin/prometheus",
    env=BINARY_ENV,
    known_version=KNOWN_VERSION,
    extra_packages=WEB_ASSETS,
    hint="/path/to/prometheus (2.x)",
)


def cache_folder(version: str) -> Path:
    return debfetch.cache_folder(TOOL, version)


def ensure_prometheus(progress: Progress = debfetch.quiet) -> Path:
    """The prometheus binary: from the environment, the cache, or fetched into the cache now."""
    return debfetch.ensure(TOOL, progress)


def ensure_promtool(progress: Progress = debfetch.quiet) -> Path:
    """promtool, from the same package (and folder) as the prometheus binary."""
    prometheus = ensure_prometheus(progress)
    promtool = prometheus.with_name("promtool")
    if not promtool.is_file():
        raise FetchError(f"no promtool next to {prometheus} (Debian's {PACKAGE} package has both)")
    return promtool


def version_of(binary: Path) -> str:
    """`prometheus --version`'s first line (e.g. "prometheus, version 2.42.0+ds ...")."""
    done = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    lines = (done.stdout or done.stderr).splitlines()
    return lines[0].strip() if lines else "unknown"
