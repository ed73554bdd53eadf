"""The Dockerfile's shape: targets, extras, users, entry points, a context holding the sources."""

from __future__ import annotations

import re

import pytest
import yaml

from imagebuild.context import ignored, read_patterns
from tests.image.dockerfile import ROOT, parse

CHART_VALUES = ROOT / "charts" / "maxtune" / "values.yaml"


def test_stages_and_targets() -> None:
    dockerfile = parse()
    assert list(dockerfile.stages) == ["builder", "operator", "agent"]
    base = "${PYTHON_IMAGE}"
    assert all(stage.base == base for stage in dockerfile.stages.values())
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", dockerfile.args["PYTHON_IMAGE"])


def test_builder_builds_only_the_wheel_from_the_sources() -> None:
    builder = parse().stage("builder")
    assert builder.runs() == ["python -m pip wheel --no-deps --wheel-dir /dist ."]
    sources = [source for sources, _ in builder.copies() for source in sources]
    assert sources == ["pyproject.toml", "README.md", "core", "agent", "operator"]


@pytest.mark.parametrize(("target", "extra"), [("operator", "operator"), ("agent", "agent")])
def test_each_target_installs_the_wheel_with_its_extra_and_the_pins(
    target: str, extra: str
) -> None:
    stage = parse().stage(target)
    install = stage.run_with("pip install")
    assert "--constraint /tmp/constraints.txt" in install
    extras = re.findall(r'maxtune-\*\.whl\)\[([a-z,]+)\]"', install)
    assert extras == [extra]  # exactly one extra: the operator never gets [agent]
    destinations = [dest for sources, dest in stage.copies() if sources == ["constraints.txt"]]
    assert destinations == ["/tmp/constraints.txt"]
    assert "--mount=type=bind,from=builder,source=/dist,target=/dist" in next(
        i.value for i in stage.all("RUN") if "pip install" in i.value
    )


def test_operator_build_fails_if_torch_gets_in() -> None:
    check = parse().stage("operator").run_with("find_spec")
    assert "'torch', 'triton'" in check and "sys.exit(" in check


@pytest.mark.parametrize("target", ["operator", "agent"])
def test_runs_as_numeric_non_root_and_starts_maxtune(target: str) -> None:
    stage = parse().stage(target)
    user = stage.last("USER")
    assert user is not None and user.value == "65532:65532"
    # USER comes after every RUN: the install steps are root's, the process is not.
    keywords = [i.keyword for i in stage.instructions]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    entrypoint = stage.last("ENTRYPOINT")
    assert entrypoint is not None and entrypoint.exec_form() == ["maxtune"]
    assert stage.env()["PATH"].startswith("/opt/maxtune/bin:")


def test_chart_pod_security_matches_the_image_user() -> None:
    values = yaml.safe_load(CHART_VALUES.read_text())
    assert values["podSecurityContext"]["runAsUser"] == 65532
    assert values["podSecurityContext"]["runAsGroup"] == 65532


def test_agent_sees_the_gpus_the_runtime_injects() -> None:
    agent = parse().stage("agent")
    env = agent.env()
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert "gcc" in agent.run_with("apt-get install")  # Triton builds its launcher at run time
    assert "import torch, triton, pynvml" in agent.run_with("import torch")


def test_context_holds_what_is_copied_and_nothing_heavy() -> None:
    patterns = read_patterns(ROOT / ".dockerignore")  # Docker's matching, as make image hashes it
    copied = {
        source
        for stage in parse().stages.values()
        for sources, _ in stage.copies()
        for source in sources
    }
    for source in sorted(copied):
        assert (ROOT / source).exists(), source
        assert not ignored(source, patterns), f"{source} is COPYd but .dockerignore drops it"
        assert not ignored(f"{source}/x.py" if (ROOT / source).is_dir() else source, patterns)
    for heavy in (
        ".venv",
        ".cache",
        ".run",
        ".git",
        "tests",
        "charts",
        "docs",
        "core/maxtune/x/__pycache__/m.pyc",
    ):
        assert ignored(heavy, patterns), heavy
