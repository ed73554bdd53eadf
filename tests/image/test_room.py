"""The disk check that runs before an image build (imagebuild/room.py): pure arithmetic."""

from __future__ import annotations

from pathlib import Path

from imagebuild.room import GB, explain, shortfalls

STORAGE = Path("/storage")
TEMP = Path("/staging")


def test_one_filesystem_must_hold_all_three_copies() -> None:
    same = {STORAGE: 1, TEMP: 1}
    short = shortfalls(
        "agent",
        storage=STORAGE,
        temp=TEMP,
        free_bytes=lambda p: int(16 * GB),
        device=same.__getitem__,
    )
    assert [(s.place, s.needed_gb) for s in short] == [(STORAGE, 18.0)]
    assert (
        shortfalls(
            "agent",
            storage=STORAGE,
            temp=TEMP,
            free_bytes=lambda p: int(18.5 * GB),
            device=same.__getitem__,
        )
        == []
    )


def test_two_filesystems_are_judged_apart() -> None:
    apart = {STORAGE: 1, TEMP: 2}
    free = {STORAGE: int(13 * GB), TEMP: int(5 * GB)}
    short = shortfalls(
        "agent", storage=STORAGE, temp=TEMP, free_bytes=free.__getitem__, device=apart.__getitem__
    )
    # storage holds two copies (12 GB: enough), the staging place one (6 GB: 1 GB short).
    assert [(s.place, s.needed_gb, s.free_gb) for s in short] == [(TEMP, 6.0, 5.0)]
    message = explain("agent", short)
    assert "/staging: 5.0 GB free, about 6 GB needed" in message
    assert "TMPDIR" in message


def test_the_operator_image_needs_far_less() -> None:
    same = {STORAGE: 1, TEMP: 1}
    assert (
        shortfalls(
            "operator",
            storage=STORAGE,
            temp=TEMP,
            free_bytes=lambda p: int(2 * GB),
            device=same.__getitem__,
        )
        == []
    )
