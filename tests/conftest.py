"""Shared fixtures: the local control plane (started once, only if a test asks for it).

`plane` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
kwok for the whole session; `kubeconfig` and `k8s` point at it; `namespace`
gives each test a fresh namespace and `kwok_nodes` makes fake GPU nodes that are
deleted after the test. When a test that used the plane fails, the tail of
every component log is attached to its report.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from maxtune_dev.localplane import LocalPlane, kwok_node_model, wait_for, wait_node_ready
from tests.fuzz.budget import TALLY

# The session's plane, for the report hook (set while the `plane` fixture is live).
_session: dict[str, LocalPlane] = {}

NodeFactory = Callable[..., list[str]]


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # pytest runs fixture teardown on KeyboardInterrupt but not on SIGTERM.
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def plane() -> Iterator[LocalPlane]:
    previous = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        with LocalPlane() as started:
            _session["plane"] = started
            yield started
    finally:
        _session.clear()
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def kubeconfig(plane: LocalPlane) -> Path:
    return plane.kubeconfig


@pytest.fixture(scope="session")
def k8s(plane: LocalPlane) -> Iterator[ApiClient]:
    with plane.api_client() as api:
        yield api


@pytest.fixture
def namespace(k8s: ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace whose `default` service account exists (pods need it)."""
    core = client.CoreV1Api(k8s)
    name = f"t-{uuid.uuid4().hex[:10]}"
    test = request.node.name[:63].strip("-_.[]") or "test"
    labels = {"maxtune.io/test": "".join(c if c.isalnum() else "-" for c in test)[:63].strip("-")}
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )
    wait_for(
        lambda: any(
            sa.metadata and sa.metadata.name == "default"
            for sa in core.list_namespaced_service_account(name).items
        ),
        timeout_s=60,
        what=f"service account {name}/default",
    )
    yield name
    try:
        core.delete_namespace(name, propagation_policy="Background")
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture
def kwok_nodes(k8s: ApiClient) -> Iterator[NodeFactory]:
    """`kwok_nodes(count=1, capacity={"nvidia.com/gpu": 8}, labels=..., taints=...)`.

    Returns the node names once each is Ready and schedulable; deletes them
    after the test.
    """
    core = client.CoreV1Api(k8s)
    created: list[str] = []

    def make(
        count: int = 1,
        *,
        capacity: Mapping[str, str | int] | None = None,
        labels: Mapping[str, str] | None = None,
        taints: Sequence[Mapping[str, str]] = (),
        prefix: str = "gpu",
        wait: bool = True,
    ) -> list[str]:
        names = [f"{prefix}-{uuid.uuid4().hex[:8]}" for _ in range(count)]
        for name in names:
            manifest = kwok_node_model(
                name,
                capacity=capacity if capacity is not None else {"nvidia.com/gpu": 8},
                labels=labels,
                taints=taints,
            )
            core.create_node(manifest)
            created.append(name)
        if wait:
            for name in names:
                wait_node_ready(k8s, name)
        return names

    yield make
    for name in created:
        try:
            core.delete_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    plane_used = "plane" in getattr(item, "fixturenames", ())
    live = _session.get("plane")
    if report.failed and plane_used and live is not None:
        report.sections.append(("local plane logs (tails)", live.format_log_tails()))
    return report


# ------------------------------------------------------------------ fuzz tally
# Each xdist worker counts its own fuzz inputs (tests/fuzz/budget.py) and hands the counts
# to the controller when it finishes; the controller (or a plain run) prints the sum.


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["fuzz_tally"] = dict(TALLY)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    TALLY.update(getattr(node, "workeroutput", {}).get("fuzz_tally", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY or getattr(terminalreporter.config, "workeroutput", None) is not None:
        return
    terminalreporter.section("fuzz inputs tried")
    for what, n in sorted(TALLY.items()):
        terminalreporter.write_line(f"{n:>9,}  {what}")
    terminalreporter.write_line(f"{sum(TALLY.values()):>9,}  in all")
    report = os.environ.get("MAXTUNE_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps(dict(sorted(TALLY.items())), indent=2) + "\n")
