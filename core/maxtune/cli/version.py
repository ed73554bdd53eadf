"""The version every component reports (build info metrics, profiles, /version)."""

from importlib import metadata


def _version() -> str:
    try:
        return metadata.version("maxtune")
    except metadata.PackageNotFoundError:  # running from a source tree without install
        return "0.0.0+unknown"


VERSION = _version()
