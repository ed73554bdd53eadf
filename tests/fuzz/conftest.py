"""The fuzz tally at the end of the session (see budget.py), and the operator fixtures the
wire tests share with the fault tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.faults.conftest import (  # noqa: F401 - fixtures, used by name
    agent_crds,
    kube,
    operator_namespace,
    operators,
    webhook_pki,
)
from tests.fuzz.budget import TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY:
        return
    terminalreporter.section("fuzz inputs tried")
    for what, n in sorted(TALLY.items()):
        terminalreporter.write_line(f"{n:>9,}  {what}")
    terminalreporter.write_line(f"{sum(TALLY.values()):>9,}  in all")
    report = os.environ.get("MAXTUNE_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps(dict(sorted(TALLY.items())), indent=2) + "\n")
