"""Which compile cache each namespace uses: the chart's directory, as the webhook reads it.

The chart renders one ConfigMap (`<release>-compile-cache`, key `directory.json`) when
`compileCache.enabled`: per member namespace, its sharing group's Redis (host, port), the ACL
user, whether the namespace may only read, and the Secret in the namespace that holds the
password. No password is in it (decision 0030). The operator mounts it as a file and reads it
again when the kubelet updates it; a file that is missing or does not parse means "no cache
for anyone", never a failed admission.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maxtune.contract import compilecache

log = logging.getLogger(__name__)

PASSWORD_VAR = "MAXTUNE_CACHE_PASSWORD"


@dataclass(frozen=True, slots=True)
class CacheEntry:
    group: str
    host: str
    port: int
    username: str
    read_only: bool
    secret_name: str
    password_key: str
    url_template: str  # holds $(MAXTUNE_CACHE_PASSWORD), which the kubelet expands

    def env(self) -> tuple[Mapping[str, Any], ...]:
        """The variables a GPU container gets, in order: the password (from the Secret in the
        pod's namespace, never in the manifest), then the URL that refers to it, then the
        switches of `maxtune.contract.compilecache` (decision 0030), the ones the agent proves."""
        return (
            {
                "name": PASSWORD_VAR,
                "valueFrom": {"secretKeyRef": {"name": self.secret_name, "key": self.password_key}},
            },
            {"name": compilecache.URL_VAR, "value": self.url_template},
            *({"name": k, "value": v} for k, v in compilecache.SWITCHES.items()),
        )


def _entry(raw: Any) -> CacheEntry | None:
    if not isinstance(raw, Mapping):
        return None
    try:
        entry = CacheEntry(
            group=str(raw["group"]),
            host=str(raw["host"]),
            port=int(raw["port"]),
            username=str(raw["username"]),
            read_only=bool(raw.get("readOnly", False)),
            secret_name=str(raw["secretName"]),
            password_key=str(raw.get("passwordKey", "password")),
            url_template=str(raw["urlTemplate"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
    if f"$({PASSWORD_VAR})" not in entry.url_template or not entry.secret_name:
        return None  # a URL with a literal password, or no Secret: not ours to hand out
    return entry


def parse(text: str) -> dict[str, CacheEntry]:
    """The directory's entries by namespace; malformed entries are left out (and logged)."""
    data = json.loads(text)
    namespaces = data.get("namespaces") if isinstance(data, Mapping) else None
    if not isinstance(namespaces, Mapping):
        raise ValueError("no `namespaces` object")
    found: dict[str, CacheEntry] = {}
    for namespace, raw in namespaces.items():
        entry = _entry(raw)
        if entry is None:
            log.warning("compile cache directory: entry for %s is malformed; ignored", namespace)
            continue
        found[str(namespace)] = entry
    return found


class DirectoryFile:
    """The mounted directory, re-read when its content changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._digest: str | None = None

    def changed(self) -> dict[str, CacheEntry] | None:
        """The entries if the file changed since the last call (empty when it is gone or
        broken); None when it did not change."""
        try:
            text = self.path.read_text()
        except OSError:
            text = ""
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest == self._digest:
            return None
        self._digest = digest
        if not text:
            return {}
        try:
            return parse(text)
        except (ValueError, AttributeError) as exc:
            log.error("compile cache directory %s does not parse (%s): no cache", self.path, exc)
            return {}
