"""The agent's RBAC constant is the one the chart grants (its RBAC test checks the render)."""

from __future__ import annotations

from maxtune.agent.publish import AGENT_LEASE_RULES, AGENT_RBAC_RULES
from tests.chart.rbac import AGENT, NAMESPACE, grant


def test_agent_rbac_rules_match_the_chart_expectation() -> None:
    from_constant = set().union(
        *(grant("cluster", group, resource, verbs) for group, resource, verbs in AGENT_RBAC_RULES),
        *(grant(NAMESPACE, group, resource, verbs) for group, resource, verbs in AGENT_LEASE_RULES),
    )
    assert from_constant == AGENT


def test_agent_rbac_rules_are_read_and_own_writes_only() -> None:
    verbs = {verb for _, _, vs in AGENT_RBAC_RULES + AGENT_LEASE_RULES for verb in vs}
    assert "delete" not in verbs and "deletecollection" not in verbs
    assert {resource for _, resource, _ in AGENT_RBAC_RULES + AGENT_LEASE_RULES} == {
        "gpunodeprofiles",
        "gpunodeprofiles/status",
        "autotunepolicies",
        "nodes",
        "leases",
    }
    # Nodes: read only (the uid of its own, for its Lease's owner reference).
    assert [vs for _, r, vs in AGENT_RBAC_RULES if r == "nodes"] == [("get",)]
