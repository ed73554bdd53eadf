"""`make lint`'s layering check (import-linter) fails on a forbidden import.

The contracts live in pyproject.toml. Each test copies the source roots into a
folder of its own, adds one import there, and runs `lint-imports` on the copy
with `python -S`: the checkout's editable install (a .pth in site-packages) is
then not on the path, so only the copy is analysed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOTS = ("core", "agent", "operator", "dev")


def _copy(tmp: Path) -> Path:
    for name in ROOTS:
        shutil.copytree(
            ROOT / name, tmp / name, ignore=shutil.ignore_patterns("__pycache__", "*.yaml")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    return tmp


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    path = [str(tree / name) for name in ROOTS] + [sysconfig.get_paths()["purelib"]]
    return subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; "
            "sys.exit(lint_imports_command(['--no-cache']))",
        ],
        cwd=tree,
        env={"PYTHONPATH": ":".join(path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    done = _lint(_copy(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("agent/maxtune/agent/report.py", "import maxtune.operator.fleet", "independent"),
        ("operator/maxtune/operator/decision.py", "import maxtune.agent.nvml", "independent"),
        ("operator/maxtune/operator/patch.py", "import maxtune_dev.testkit", "dev tooling"),
        ("core/maxtune/contract/modes.py", "import torch", "operator image has no torch"),
        ("core/maxtune/contract/models.py", "import maxtune.agent", "depend on neither"),
    ],
)
def test_a_forbidden_import_fails_the_lint(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    tree = _copy(tmp_path)
    with (tree / module).open("a") as handle:
        handle.write(f"\n{line}  # noqa\n")
    done = _lint(tree)
    assert done.returncode != 0, done.stdout
    broken = done.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, done.stdout
    assert module.rsplit("/", 1)[-1].removesuffix(".py") in broken
