"""Builder failures name their step and log; the cache is keyed by version."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from maxtune_dev.localplane.build import BuildError, ensure_component, is_built
from maxtune_dev.localplane.versions import Component

# A module that cannot resolve: GOPROXY=off makes `go get` fail at once, offline.
MISSING = Component(
    name="missing",
    module="example.invalid/missing",
    candidates=("v0.0.1", "v0.0.2"),
    packages=(("example.invalid/missing/cmd/missing", "missing"),),
)


def test_missing_toolchain_names_the_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BuildError) as caught:
        ensure_component(MISSING, cache=tmp_path, progress=lambda _: None)
    assert "find the Go toolchain" in str(caught.value)
    assert caught.value.step == "find the Go toolchain"
    # Not the candidate's fault: nothing is marked as failed.
    assert not list((tmp_path / "bin").glob("*.failed"))


@pytest.mark.skipif(shutil.which("go") is None, reason="needs the Go toolchain")
def test_failed_build_names_step_and_log_then_tries_the_next_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOPROXY", "off")
    monkeypatch.setenv("GOFLAGS", "-mod=mod")
    lines: list[str] = []
    with pytest.raises(BuildError) as caught:
        ensure_component(MISSING, cache=tmp_path, progress=lines.append)
    message = str(caught.value)
    for version in MISSING.candidates:
        assert f"missing {version}: resolve (go get)" in message
        log = tmp_path / "logs" / f"missing-{version}.log"
        assert str(log) in message
        assert "GOPROXY=off" in log.read_text()
        assert (tmp_path / "bin" / f"missing-{version}.failed").is_file()
    assert any("trying the next candidate" in line for line in lines)
    # A failed candidate is skipped (not rebuilt) on the next run.
    with pytest.raises(BuildError, match="failed recently"):
        ensure_component(MISSING, cache=tmp_path, progress=lines.append)


def test_a_complete_folder_counts_as_built(tmp_path: Path) -> None:
    folder = tmp_path / "bin" / "missing-v0.0.2"
    folder.mkdir(parents=True)
    binary = folder / "missing"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert not is_built(MISSING, "v0.0.2", tmp_path)  # no stamp: an interrupted build
    (folder / ".complete").write_text("{}")
    assert is_built(MISSING, "v0.0.2", tmp_path)
    version, found = ensure_component(MISSING, cache=tmp_path, progress=lambda _: None)
    assert (version, found) == ("v0.0.2", folder)
