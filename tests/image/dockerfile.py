"""Just enough of a Dockerfile parser to run its commands outside Docker.

No Docker engine exists here, so the image tests read the Dockerfile and run its own RUN lines
(pip wheel, venv, pip install, the no-torch check) on this machine, with the image's absolute
paths mapped into a temporary folder. What a test runs is what the image runs: change a command
in the Dockerfile and the tests run the new one.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str

    def exec_form(self) -> list[str] | None:
        """["a", "b"] for ENTRYPOINT/CMD written in exec form, else None."""
        if not self.value.startswith("["):
            return None
        parsed = json.loads(self.value)
        assert isinstance(parsed, list) and all(isinstance(item, str) for item in parsed)
        return parsed


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        """ENV KEY=VALUE pairs, in order (later ones win), as written."""
        values: dict[str, str] = {}
        for item in self.all("ENV"):
            for pair in shlex.split(item.value):
                key, _, value = pair.partition("=")
                values[key] = value
        return values

    def copies(self) -> list[tuple[list[str], str]]:
        """(sources, destination) of each COPY from the build context (not --from=...)."""
        found: list[tuple[list[str], str]] = []
        for item in self.all("COPY"):
            words = shlex.split(item.value)
            if any(word.startswith("--from=") for word in words):
                continue
            paths = [word for word in words if not word.startswith("--")]
            found.append((paths[:-1], paths[-1]))
        return found

    def runs(self) -> list[str]:
        """Shell commands of the RUN lines, without their --mount options."""
        commands = []
        for item in self.all("RUN"):
            commands.append(re.sub(r"^(--mount=\S+\s+)+", "", item.value))
        return commands

    def run_with(self, needle: str) -> str:
        matches = [command for command in self.runs() if needle in command]
        assert len(matches) == 1, f"stage {self.name}: {len(matches)} RUN lines contain {needle!r}"
        return matches[0]


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: dict[str, Stage]

    def stage(self, name: str) -> Stage:
        assert name in self.stages, f"Dockerfile has no stage {name!r}: {sorted(self.stages)}"
        return self.stages[name]


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped by Docker
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current.strip())
    return lines


def parse(path: Path = DOCKERFILE) -> Dockerfile:
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in _logical_lines(path.read_text()):
        keyword, _, value = line.partition(" ")
        keyword = keyword.upper()
        value = value.strip()
        if keyword == "FROM":
            match = re.match(r"^(\S+)\s+AS\s+(\S+)$", value, re.IGNORECASE)
            assert match, f"every stage is named: FROM {value}"
            current = Stage(name=match.group(2), base=match.group(1))
            stages[current.name] = current
        elif current is None:
            if keyword == "ARG":
                name, _, default = value.partition("=")
                args[name] = default
        else:
            current.instructions.append(Instruction(keyword, value))
    return Dockerfile(args=args, stages=stages)


def localize(command: str, paths: Mapping[str, Path]) -> str:
    """The command with each absolute image path replaced by its local stand-in."""
    for image_path in sorted(paths, key=len, reverse=True):
        command = command.replace(image_path, str(paths[image_path]))
    return command
