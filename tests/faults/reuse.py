"""The operator suite's helpers, for the fault, security and fuzz tests.

tests/operator is a rootdir-style folder (no __init__.py: its modules import each other by
bare name), so its helpers are importable only with the folder on sys.path. Reusing them keeps
one way of running the operator, making its certificates and writing profiles.
"""

from __future__ import annotations

import sys
from pathlib import Path

OPERATOR_TESTS = Path(__file__).resolve().parents[1] / "operator"
if str(OPERATOR_TESTS) not in sys.path:
    sys.path.insert(0, str(OPERATOR_TESTS))

import opcerts  # noqa: E402
import opkit  # noqa: E402
import opplane  # noqa: E402

__all__ = ["opcerts", "opkit", "opplane"]
