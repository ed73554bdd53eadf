"""The real helm binary, driven the way a user drives it, and the rendered objects it gives.

helm is built by the local control-plane harness from pinned Go modules; nothing here fakes it.
Renders are cached by their exact arguments: a render is pure except for the chart-generated
certificate, which no assertion compares across two renders.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from maxtune_dev.localplane import binaries

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "maxtune"
RELEASE = "mt"
NAMESPACE = "maxtune-system"
FULLNAME = "mt-maxtune"
HELM_TIMEOUT_S = 120


class HelmError(RuntimeError):
    """helm exited non-zero; the message carries its stderr (what a user would read)."""

    def __init__(self, args: Sequence[str], code: int, stderr: str) -> None:
        self.code = code
        self.stderr = stderr
        super().__init__(f"helm {' '.join(args)} exited {code}:\n{stderr}")


@functools.cache
def helm_path() -> Path:
    return binaries().helm


def helm(
    *args: str,
    kubeconfig: Path | None = None,
    check: bool = True,
    timeout_s: float = HELM_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run helm with an isolated home, so no user repository or plugin changes its behaviour."""
    home = Path(tempfile.gettempdir()) / f"maxtune-helm-home-{os.getuid()}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    env["KUBECONFIG"] = str(kubeconfig) if kubeconfig else str(home / "no-cluster")
    done = subprocess.run(
        [str(helm_path()), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if check and done.returncode != 0:
        raise HelmError(args, done.returncode, done.stderr)
    return done


def values_args(values: Mapping[str, Any] | None, folder: Path) -> list[str]:
    """A values file (JSON is YAML) instead of --set, so types are exactly what the test says."""
    if not values:
        return []
    path = folder / "values.json"
    path.write_text(json.dumps(values))
    return ["-f", str(path)]


@dataclass(frozen=True)
class Rendered:
    """The objects of one `helm template`, with lookups by kind and name."""

    objects: tuple[dict[str, Any], ...]

    def kinds(self) -> list[str]:
        return sorted(obj["kind"] for obj in self.objects)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [obj for obj in self.all(kind) if obj["metadata"]["name"] == name]
        if len(found) != 1:
            names = [obj["metadata"]["name"] for obj in self.all(kind)]
            raise KeyError(f"{kind}/{name}: found {len(found)}; {kind} objects: {names}")
        return found[0]

    def has(self, kind: str, name: str) -> bool:
        return any(obj["metadata"]["name"] == name for obj in self.all(kind))

    def workloads(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] in ("Deployment", "DaemonSet", "Job", "Pod")]


def pod_spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]
    if obj["kind"] == "Pod":
        return spec
    template: dict[str, Any] = spec["template"]["spec"]
    return template


def template_args(
    values: Mapping[str, Any] | None = None,
    api_versions: Iterable[str] = (),
    extra: Sequence[str] = (),
) -> tuple[list[str], tempfile.TemporaryDirectory[str]]:
    folder = tempfile.TemporaryDirectory(prefix="maxtune-chart-")
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    args += values_args(values, Path(folder.name))
    for api in api_versions:
        args += ["--api-versions", api]
    return [*args, *extra], folder


def render_text(
    values: Mapping[str, Any] | None = None,
    api_versions: Iterable[str] = (),
    extra: Sequence[str] = (),
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    args, folder = template_args(values, api_versions, extra)
    with folder:
        return helm(*args, check=check)


@functools.cache
def _render_cached(values_json: str, api_versions: tuple[str, ...]) -> Rendered:
    done = render_text(json.loads(values_json), api_versions)
    objects = tuple(obj for obj in yaml.safe_load_all(done.stdout) if obj)
    return Rendered(objects)


def render(values: Mapping[str, Any] | None = None, api_versions: Iterable[str] = ()) -> Rendered:
    """`helm template` with these values; raises HelmError (with helm's message) on refusal."""
    return _render_cached(json.dumps(values or {}, sort_keys=True), tuple(sorted(api_versions)))


def render_error(values: Mapping[str, Any] | None = None, api_versions: Iterable[str] = ()) -> str:
    """helm's message when it refuses these values; fails the test if helm renders them."""
    done = render_text(values, api_versions, check=False)
    assert done.returncode != 0, f"helm rendered values it should refuse: {values}"
    return done.stderr


def container(obj: Mapping[str, Any], name: str) -> dict[str, Any]:
    for item in pod_spec(obj)["containers"]:
        if item["name"] == name:
            found: dict[str, Any] = item
            return found
    raise KeyError(f"no container {name} in {obj['kind']}/{obj['metadata']['name']}")


def flag(args: Sequence[str], name: str) -> str | None:
    """The value after `--name` in an argument list (None when the flag is absent)."""
    items = list(args)
    if name not in items:
        return None
    index = items.index(name)
    return items[index + 1] if index + 1 < len(items) else ""
