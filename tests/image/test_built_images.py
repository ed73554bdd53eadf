"""The images as built (buildah, tests/image/built.py), checked by running commands inside them.

tests/image/test_install_as_dockerfile.py replays the Dockerfile's pip lines on this machine;
these run the real images: the console script and its subcommands, the non-root user, the
operator's missing torch, the agent's CUDA torch at its pin, and that each image is the one of
this tree (its inputs label).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from imagebuild.build import INPUTS_LABEL, Built, ensure
from imagebuild.buildah import Container
from imagebuild.context import inputs_digest
from tests.image.built import container, require
from tests.image.test_install_as_dockerfile import _pins

pytestmark = [pytest.mark.image, pytest.mark.slow]

TARGETS = ("operator", "agent")


@pytest.fixture(scope="module")
def images() -> dict[str, Built]:
    return require(*TARGETS)


@pytest.fixture(scope="module")
def operator_inside(images: dict[str, Built]) -> Iterator[Container]:
    with container(images["operator"]) as made:
        yield made


@pytest.fixture(scope="module")
def agent_inside(images: dict[str, Built]) -> Iterator[Container]:
    """vfs copies the whole image into the container: about 30 s for the agent's."""
    with container(images["agent"]) as made:
        yield made


@pytest.fixture(params=TARGETS)
def inside(request: pytest.FixtureRequest) -> Container:
    made: Container = request.getfixturevalue(f"{request.param}_inside")
    return made


def _ok(made: Container, *command: str) -> str:
    done = made.run(*command)
    assert done.returncode == 0, f"{command} in {made.name}: {done.stdout}{done.stderr}"
    return done.stdout


def test_images_are_of_this_tree_and_reused_while_it_is_unchanged(
    images: dict[str, Built],
) -> None:
    base = images["base"].image.id
    for target in TARGETS:
        labels = images[target].image.labels
        assert labels[INPUTS_LABEL] == inputs_digest(target, base), target
    again = {built.what: built for built in ensure(TARGETS, progress=lambda line: None)}
    for what, built in again.items():
        assert built.reused, what
        assert built.image.id == images[what].image.id, what


@pytest.mark.parametrize(
    "argv", [["--help"], ["operator", "--help"], ["agent", "--help"]], ids=" ".join
)
def test_console_script_and_subcommands_run(inside: Container, argv: list[str]) -> None:
    assert "usage: maxtune" in _ok(inside, "maxtune", *argv)


def test_runs_as_the_numeric_non_root_user(inside: Container) -> None:
    assert _ok(inside, "id", "-u").strip() == "65532"
    assert _ok(inside, "id", "-g").strip() == "65532"
    assert _ok(inside, "sh", "-c", "command -v maxtune").strip() == "/opt/maxtune/bin/maxtune"


def _installed(made: Container) -> dict[str, str]:
    listed = _ok(made, "/opt/maxtune/bin/python", "-m", "pip", "list", "--format", "json")
    return {item["name"].lower(): item["version"] for item in json.loads(listed)}


def test_operator_image_has_no_torch_or_triton(operator_inside: Container) -> None:
    inside = operator_inside
    installed = _installed(inside)
    assert not [n for n in installed if n in ("torch", "triton") or n.startswith("nvidia-")]
    assert {"aiohttp", "cryptography", "kubernetes", "jsonpatch"} <= set(installed)
    done = inside.run("python", "-c", "import torch")
    assert done.returncode != 0 and "No module named 'torch'" in done.stderr


def test_agent_image_has_cuda_torch_at_its_pin(agent_inside: Container) -> None:
    inside = agent_inside
    installed, pins = _installed(inside), _pins()
    for name in ("torch", "triton", "nvidia-ml-py", "numpy"):
        assert installed[name] == pins[name], name
    assert "cryptography" not in installed  # the agent does not carry the operator extra
    probe = "import torch, triton, pynvml; print(torch.version.cuda)"
    assert _ok(inside, "python", "-c", probe).strip().startswith("13.")
    # Triton compiles its launcher with the C compiler at run time.
    assert _ok(inside, "sh", "-c", "command -v gcc").strip() == "/usr/bin/gcc"
