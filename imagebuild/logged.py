"""Run a long command with its output appended to a log, each line stamped with elapsed time.

buildah and mmdebstrap print their steps but not when each began; the stamps are what the
build-time figures in docs/benchmarks/control-plane.md are read from (which step costs what).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path


def run_logged(argv: Sequence[str], log: Path, timeout_s: float) -> int:
    """The command's exit status; killed (status -9) once `timeout_s` has passed."""
    started = time.monotonic()
    with log.open("a") as out:
        out.write(f"[{0:7.1f} s] $ {' '.join(argv)}\n")
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        timer = threading.Timer(timeout_s, process.kill)
        timer.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                out.write(f"[{time.monotonic() - started:7.1f} s] {line}")
                out.flush()
            code = process.wait()
        finally:
            timer.cancel()
        out.write(f"[{time.monotonic() - started:7.1f} s] exit {code}\n")
    return code
