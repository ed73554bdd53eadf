"""Build the wheel and install it exactly as the Dockerfile does, in clean venvs, without Docker.

The commands come from the Dockerfile itself (tests/image/dockerfile.py): the builder's COPY set
and pip wheel line, the operator's venv + pip install line and its no-torch check, the agent's
pip install line (resolved with --dry-run: the CUDA wheels are gigabytes). The only differences
from an image build are the paths (mapped into a temporary folder) and a pip cache kept between
runs (the image sets PIP_NO_CACHE_DIR).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.image.dockerfile import ROOT, Stage, localize, parse

pytestmark = pytest.mark.slow

PIP_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "maxtune-tests" / "pip"
INSTALL_TIMEOUT_S = 900


@dataclass(frozen=True)
class Image:
    """A stage's file system, mapped onto this machine."""

    root: Path
    paths: dict[str, Path]

    def env(self, stage: Stage) -> dict[str, str]:
        base = Path(sys.base_prefix) / "bin"
        env = {
            "PATH": f"{self.root / 'usr-bin'}:{base}:/usr/bin:/bin",
            "HOME": str(self.root / "home"),
            "PIP_CACHE_DIR": str(PIP_CACHE),
        }
        for key, value in stage.env().items():
            env[key] = localize(value.replace("$PATH", env["PATH"]), self.paths)
        env.pop("PIP_NO_CACHE_DIR", None)  # the one deliberate difference: reuse downloads
        return env

    def sh(
        self, command: str, stage: Stage, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", localize(command, self.paths)],
            cwd=cwd or self.root,
            env=self.env(stage),
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )


def _image(root: Path, extra: Mapping[str, Path] | None = None) -> Image:
    root.mkdir(parents=True, exist_ok=True)
    (root / "home").mkdir(exist_ok=True)
    # `python` as the python:3.11 image has it: the interpreter this checkout's venv came from.
    bin_dir = root / "usr-bin"
    bin_dir.mkdir(exist_ok=True)
    python = (
        Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    )
    (bin_dir / "python").symlink_to(python)
    return Image(root=root, paths=dict(extra or {}))


def _ok(done: subprocess.CompletedProcess[str], what: str) -> str:
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The builder stage: its COPY set into /src, then its RUN line."""
    builder = parse().stage("builder")
    root = tmp_path_factory.mktemp("builder")
    dist = root / "dist"
    image = _image(root, {"/dist": dist})
    src = root / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache")
    for sources, dest in builder.copies():
        target = src / dest
        for source in sources:
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=ignore)
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, target / source)
    for command in builder.runs():
        _ok(image.sh(command, builder, cwd=src), f"builder: {command}")
    wheels = list(dist.glob("maxtune-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _install_image(stage_name: str, root: Path, wheel: Path) -> tuple[Image, Stage]:
    stage = parse().stage(stage_name)
    shutil.copy2(ROOT / "constraints.txt", root / "constraints.txt")
    image = _image(
        root,
        {
            "/opt/maxtune": root / "opt" / "maxtune",
            "/tmp/constraints.txt": root / "constraints.txt",
            "/dist": wheel.parent,
        },
    )
    return image, stage


@pytest.fixture(scope="module")
def operator_image(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Image:
    """The operator stage's install and check lines, run in order (user creation is skipped)."""
    image, stage = _install_image("operator", tmp_path_factory.mktemp("operator"), wheel)
    for command in stage.runs():
        if command.startswith("groupadd"):
            continue  # creates the runtime user: a system change, not an install step
        _ok(image.sh(command, stage), f"operator stage: {command[:80]}")
    return image


def _venv(image: Image) -> Path:
    return image.paths["/opt/maxtune"]


def test_wheel_merges_the_three_source_roots(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    for package in ("contract", "cli", "agent", "operator"):
        assert f"maxtune/{package}/__init__.py" in names, package
    assert "maxtune/__init__.py" not in names  # a namespace package, as in the checkout
    assert not [n for n in names if n.startswith("operator/")]  # never importable as `operator`


def test_wheel_carries_the_product_only(wheel: Path) -> None:
    """The local control plane, the demo and the test support are dev tooling (dev/)."""
    names = zipfile.ZipFile(wheel).namelist()
    tooling = [
        n
        for n in names
        if n.startswith(("maxtune_dev/", "maxtune/localplane/", "maxtune/demo/", "benchmarks/"))
        or "testkit" in n
    ]
    assert tooling == []
    assert "maxtune/operator/decision.py" in names and "maxtune/agent/daemon.py" in names


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["operator", "--help"],
        ["cleanup", "--help"],
        ["status", "--help"],
        ["mutate", "--help"],
        ["explain", "--sm-count", "132", "--json"],
    ],
)
def test_operator_image_commands_run(operator_image: Image, argv: list[str]) -> None:
    stage = parse().stage("operator")
    entrypoint = stage.last("ENTRYPOINT")
    assert entrypoint is not None
    command = [*(entrypoint.exec_form() or []), *argv]
    done = subprocess.run(
        command,
        env=operator_image.env(stage),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    if argv == ["--help"]:  # only what runs in a cluster, and the user CLI: no demo
        assert "demo" not in done.stdout and "operator" in done.stdout, done.stdout
    assert shutil.which("maxtune", path=operator_image.env(stage)["PATH"]) == str(
        _venv(operator_image) / "bin" / "maxtune"
    )


def _installed(venv: Path) -> dict[str, str]:
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {item["name"].lower(): item["version"] for item in json.loads(done.stdout)}


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_operator_image_has_no_torch_and_follows_the_pins(operator_image: Image) -> None:
    installed = _installed(_venv(operator_image))
    assert not {n for n in installed if n in ("torch", "triton") or n.startswith("nvidia-")}
    assert {"aiohttp", "cryptography", "kubernetes", "pydantic", "jsonpatch"} <= set(installed)
    assert "kopf" not in installed  # the informers replaced it (decision 0007)
    pins = _pins()
    unpinned = sorted(
        n
        for n in installed
        if n.replace("_", "-") not in pins and n not in ("pip", "setuptools", "maxtune")
    )
    assert not unpinned, f"installed without a pin in constraints.txt: {unpinned}"
    for name, version in installed.items():
        key = name.replace("_", "-")
        if key in pins:
            assert version == pins[key], f"{name} {version} != pin {pins[key]}"
    python = str(_venv(operator_image) / "bin" / "python")
    done = subprocess.run(
        [python, "-c", "import torch"], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0 and "No module named 'torch'" in done.stderr


def test_helm_test_script_runs_on_the_operator_image(operator_image: Image) -> None:
    python = str(_venv(operator_image) / "bin" / "python")
    script = ROOT / "charts" / "maxtune" / "files" / "smoke_test.py"
    imported = subprocess.run(
        [python, "-c", "import kubernetes.client, kubernetes.config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    done = subprocess.run(
        [python, str(script), "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "--webhook-url" in done.stdout


def test_no_torch_check_refuses_an_environment_with_torch(tmp_path: Path) -> None:
    """The operator stage's check, run against this checkout's venv (which has the agent extra)."""
    stage = parse().stage("operator")
    check = stage.run_with("find_spec")
    image = _image(tmp_path, {"/opt/maxtune": ROOT / ".venv"})
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("needs the checkout's .venv (make venv)")
    done = image.sh(check, stage)
    assert done.returncode != 0
    assert "operator image must not contain ['torch', 'triton']" in done.stderr


def test_agent_install_resolves_cuda_torch_from_the_pins(tmp_path: Path, wheel: Path) -> None:
    """The agent stage's pip line, resolved (--dry-run): the CUDA wheels are gigabytes."""
    image, stage = _install_image("agent", tmp_path, wheel)
    install = stage.run_with("pip install")
    report = tmp_path / "report.json"
    dry = install.replace(
        "-m pip install ", f"-m pip install --dry-run --quiet --report {report} ", 1
    ).replace(" && rm /tmp/constraints.txt", "")
    assert dry != install
    _ok(image.sh(dry, stage), "agent stage install (dry run)")
    resolved = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    pins = _pins()
    for name in ("torch", "triton", "nvidia-ml-py", "numpy"):
        assert resolved[name] == pins[name], name
    assert "nvidia-cuda-runtime" in resolved  # torch's CUDA libraries come from PyPI wheels
    assert "cryptography" not in resolved  # nor the operator extra (its webhook TLS)
