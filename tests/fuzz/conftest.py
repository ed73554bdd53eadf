"""The operator fixtures the wire tests share with the fault tests (the fuzz tally is printed
by tests/conftest.py, which the xdist controller loads too)."""

from __future__ import annotations

from tests.faults.conftest import (  # noqa: F401 - fixtures, used by name
    agent_crds,
    kube,
    operator_namespace,
    operators,
    webhook_pki,
)
