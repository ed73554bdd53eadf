"""The shared Debian fetch: the Python unpacker gives what `dpkg -x` gives, on real .debs.

The .debs come from the machine's own apt (as `make tools` fetches them): redis-server is a
package whose binary is a symlink into another package, the case that matters.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from maxtune_dev.localplane import debfetch


def _tree(root: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = f"link -> {os.readlink(path)}"
        elif path.is_file():
            found[rel] = f"file {path.stat().st_size} {oct(path.stat().st_mode & 0o777)}"
        else:
            found[rel] = "dir"
    return found


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    work = tmp_path_factory.mktemp("debs")
    _, found = debfetch.download(["redis-server", "redis-tools", "liblzf1"], work)
    return found


def test_python_unpack_matches_dpkg(debs: list[Path], tmp_path: Path) -> None:
    for deb in debs:
        with_dpkg, with_python = tmp_path / f"dpkg-{deb.name}", tmp_path / f"py-{deb.name}"
        debfetch.unpack(deb, with_dpkg)  # dpkg is on this machine
        debfetch.unpack_python(deb, with_python)
        assert _tree(with_python) == _tree(with_dpkg), deb.name
    assert _tree(tmp_path / f"py-{debs[0].name}")["usr/bin/redis-server"] == (
        "link -> redis-check-rdb"
    )


def test_unpack_all_is_whole_or_nothing(debs: list[Path], tmp_path: Path) -> None:
    target = tmp_path / "tool"
    with pytest.raises(debfetch.FetchError, match="no usr/bin/nothing-here"):
        debfetch.unpack_all(debs, target, "usr/bin/nothing-here")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    binary = debfetch.unpack_all(debs, target, "usr/bin/redis-server")
    assert binary == target / "usr/bin/redis-server"
    assert (target / debfetch.COMPLETE).read_text().split() == [d.name for d in debs]


def test_not_a_deb_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.deb"
    bogus.write_bytes(b"PK\x03\x04 not an ar archive")
    with pytest.raises(debfetch.FetchError, match="not a Debian package"):
        debfetch.unpack_python(bogus, tmp_path / "out")


def test_epoch_colon_never_reaches_a_folder_name() -> None:
    # LD_LIBRARY_PATH and PATH split on ':'; Debian's redis version has an epoch ("5:7.0.15-...").
    tool = debfetch.DebianTool("redis", "redis-server", "usr/bin/redis-server", "X", "5:7.0")
    assert ":" not in debfetch.cache_folder(tool, "5:7.0.15-1~deb12u10").name


def test_override_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tool = debfetch.DebianTool("t", "t", "usr/bin/t", "MAXTUNE_TEST_TOOL", "1.0")
    monkeypatch.setenv("MAXTUNE_TEST_TOOL", str(tmp_path / "missing"))
    with pytest.raises(debfetch.FetchError, match=r"MAXTUNE_TEST_TOOL=.*no such file"):
        debfetch.ensure(tool)
