"""The images' cache key: the build context as .dockerignore makes it, and its digest.

An image is reused while this digest is unchanged (imagebuild/build.py), so it must move with
everything the image is built from and with nothing else.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from imagebuild.base import RECIPE, Recipe
from imagebuild.context import DOCKERIGNORE, context_files, ignored, inputs_digest, read_patterns
from tests.image.dockerfile import ROOT, parse


def test_context_is_what_the_dockerfile_copies() -> None:
    files = context_files()
    copied = {
        source
        for stage in parse().stages.values()
        for sources, _ in stage.copies()
        for source in sources
    }
    for path in files:
        assert any(path == c or path.startswith(f"{c}/") for c in copied), path
        assert "__pycache__" not in path and not path.endswith(".pyc"), path
    for source in copied:
        assert any(p == source or p.startswith(f"{source}/") for p in files), source
    assert "core/maxtune/cli/main.py" in files


@pytest.mark.parametrize(
    ("path", "left_out"),
    [
        ("pyproject.toml", False),
        ("core/maxtune/cli/main.py", False),
        ("operator/maxtune/operator/webhook.py", False),
        ("core/maxtune/cli/__pycache__/main.cpython-311.pyc", True),
        ("agent/maxtune/agent/x.pyc", True),
        ("tests/conftest.py", True),
        (".venv/bin/python", True),
        ("docs/architecture.md", True),
        ("Dockerfile", True),  # read by buildah itself, not sent in the context
        ("charts/maxtune/values.yaml", True),
    ],
)
def test_dockerignore_matching(path: str, left_out: bool) -> None:
    assert ignored(path, read_patterns(ROOT / DOCKERIGNORE)) is left_out


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small tree with this repository's Dockerfile and .dockerignore."""
    for name in ("Dockerfile", DOCKERIGNORE):
        shutil.copy2(ROOT / name, tmp_path / name)
    for name, text in {
        "pyproject.toml": "[project]\nname = 'maxtune'\n",
        "README.md": "readme\n",
        "constraints.txt": "kopf==1.0\n",
        "core/maxtune/cli/main.py": "print('hi')\n",
        "agent/maxtune/agent/a.py": "",
        "operator/maxtune/operator/o.py": "",
        "tests/test_x.py": "",
        "docs/x.md": "",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_digest_moves_with_every_input_and_nothing_else(tree: Path) -> None:
    def digest(target: str = "operator", base: str = "b1") -> str:
        return inputs_digest(target, base, tree)

    first = digest()
    assert digest() == first
    assert digest("agent") != first and digest(base="b2") != first

    # Not inputs: tests, docs, byte code, a new file the context leaves out.
    (tree / "tests" / "test_x.py").write_text("changed")
    (tree / "docs" / "x.md").write_text("changed")
    (tree / "core" / "maxtune" / "cli" / "__pycache__").mkdir()
    (tree / "core" / "maxtune" / "cli" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"x")
    (tree / "notes.txt").write_text("x")
    assert digest() == first

    # Inputs: each one changes the digest.
    seen = {first}
    for path, text in [
        ("core/maxtune/cli/main.py", "print('changed')\n"),
        ("core/maxtune/cli/new.py", ""),
        ("constraints.txt", "kopf==1.1\n"),
        ("pyproject.toml", "[project]\nname = 'maxtune'\nversion = '2'\n"),
        ("README.md", "new readme\n"),
        ("Dockerfile", (tree / "Dockerfile").read_text() + "\n# changed\n"),
        (DOCKERIGNORE, (tree / DOCKERIGNORE).read_text() + "\n!docs/\n"),
    ]:
        (tree / path).write_text(text)
        now = digest()
        assert now not in seen, f"{path} changed but the digest did not"
        seen.add(now)
    (tree / "operator" / "maxtune" / "operator" / "o.py").unlink()
    assert digest() not in seen


def test_base_is_named_by_its_recipe() -> None:
    """A changed package list or mirror makes a new base (and so new images), not a stale reuse."""
    assert RECIPE.name().startswith("localhost/maxtune-base:bookworm-")
    assert Recipe(packages=(*RECIPE.packages, "curl")).name() != RECIPE.name()
    assert Recipe(mirrors=RECIPE.mirrors[:1]).name() != RECIPE.name()
    assert Recipe().name() == RECIPE.name()


def test_image_tests_skip_only_where_images_cannot_be_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without buildah a test skips with the reason; under `make test` (CI) it fails instead."""
    from tests.image import built

    monkeypatch.setattr(built, "available", lambda: "buildah is not installed")
    monkeypatch.delenv(built.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"cannot be built.*buildah is not installed"):
        built.require("operator")
    monkeypatch.setenv(built.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="MAXTUNE_REQUIRE_IMAGES=1 but"):
        built.require("operator")
