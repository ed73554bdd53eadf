"""run_logged: the build logs' elapsed-time stamps, exit status and time limit."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from imagebuild.logged import run_logged


def test_lines_stamped_and_status_kept(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("earlier\n")
    code = run_logged(["sh", "-c", "echo one; sleep 0.3; echo two >&2; exit 3"], log, 30)
    assert code == 3
    lines = log.read_text().splitlines()
    assert lines[0] == "earlier"  # appended, not replaced
    stamped = [re.fullmatch(r"\[\s*([0-9.]+) s\] (.*)", line) for line in lines[1:]]
    assert all(stamped), lines
    texts = [m.group(2) for m in stamped if m]
    assert texts[0].startswith("$ sh -c") and texts[1:] == ["one", "two", "exit 3"]
    times = [float(m.group(1)) for m in stamped if m]
    assert times == sorted(times) and times[2] - times[1] >= 0.25


def test_killed_at_its_time_limit(tmp_path: Path) -> None:
    started = time.monotonic()
    code = run_logged(["sleep", "30"], tmp_path / "build.log", 0.5)
    assert code == -signal.SIGKILL
    assert time.monotonic() - started < 10
