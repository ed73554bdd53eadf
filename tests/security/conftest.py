"""Security tests use the chart's release fixture (helm install on the session plane) and the
operator-process fixtures of the fault tests; both are imported here by name."""

from __future__ import annotations

from tests.chart.conftest import install  # noqa: F401 - fixture
from tests.faults.conftest import (  # noqa: F401 - fixtures
    agent_crds,
    kube,
    operator_namespace,
    operators,
    webhook_pki,
)
