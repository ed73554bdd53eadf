"""What an image is built from, and one digest of it: the key that decides rebuild or reuse.

The build context is the repository filtered by .dockerignore (the files buildah sends), plus
the Dockerfile and .dockerignore themselves. Hashing exactly that set (paths and contents), the
target and the base image's ID gives a key that changes when, and only when, the image could
change: a new source file or pin rebuilds, a test, a doc or a `__pycache__` does not.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = "Dockerfile"
DOCKERIGNORE = ".dockerignore"


@dataclass(frozen=True)
class Pattern:
    """One .dockerignore line: a path pattern, or its exception (`!pattern`)."""

    regex: re.Pattern[str]
    text: str
    negated: bool


@cache
def _translate(pattern: str) -> re.Pattern[str]:
    """Docker's path match: `*` and `?` stop at `/`, `**` crosses folders, `[...]` as written."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out, i = out + re.escape("["), i + 1
            else:
                out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def read_patterns(path: Path) -> list[Pattern]:
    patterns: list[Pattern] = []
    for line in path.read_text().splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        negated = text.startswith("!")
        body = os.path.normpath(text.removeprefix("!").strip()).lstrip("/")
        patterns.append(Pattern(_translate(body), body, negated))
    return patterns


def ignored(relative: str, patterns: list[Pattern]) -> bool:
    """Whether buildah leaves `relative` (a POSIX path) out of the context: last match wins.

    A pattern that matches a folder matches everything under it, as in Docker.
    """
    parts = relative.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for pattern in patterns:
        if any(pattern.regex.fullmatch(prefix) for prefix in prefixes):
            result = not pattern.negated
    return result


def context_files(root: Path = ROOT) -> list[str]:
    """Every file of the build context, as sorted POSIX paths relative to `root`.

    Folders that are ignored and that no exception pattern reaches into are not walked (the
    checkout's .venv and .cache hold gigabytes).
    """
    patterns = read_patterns(root / DOCKERIGNORE)
    exceptions = [p.text for p in patterns if p.negated]
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        base = Path(folder).relative_to(root).as_posix()
        prefix = "" if base == "." else f"{base}/"
        kept = []
        for name in sorted(dirs):
            relative = prefix + name
            reaches_in = any(e.startswith(f"{relative}/") for e in exceptions)
            if not ignored(relative, patterns) or reaches_in:
                kept.append(name)
        dirs[:] = kept
        found.extend(prefix + n for n in files if not ignored(prefix + n, patterns))
    return sorted(found)


def inputs_digest(target: str, base_id: str, root: Path = ROOT) -> str:
    """sha256 over the target, the base image's ID, the Dockerfile, .dockerignore and context."""
    digest = hashlib.sha256()
    for part in (f"target={target}", f"base={base_id}"):
        digest.update(part.encode() + b"\0")
    for relative in [DOCKERFILE, DOCKERIGNORE, *context_files(root)]:
        digest.update(relative.encode() + b"\0")
        digest.update(hashlib.sha256((root / relative).read_bytes()).digest())
    return digest.hexdigest()
