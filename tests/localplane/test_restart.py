"""One component restarted in place: same address, same credentials, same data.

Fault tests (tests/faults) restart the API server under the operator and the agents; these
tests prove the harness does what they rely on, on a plane of their own so that the session's
plane never sees a restart it did not ask for.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from maxtune_dev.localplane import LocalPlane, PlaneError, wait_for
from maxtune_dev.localplane.process import pid_alive

pytestmark = [pytest.mark.plane, pytest.mark.slow]


@pytest.fixture(scope="module")
def own_plane() -> Iterator[LocalPlane]:
    with LocalPlane() as started:
        yield started


def _config_map(api: client.ApiClient, name: str) -> dict[str, str]:
    found = client.CoreV1Api(api).read_namespaced_config_map(name, "default")
    return dict(found.data or {})


def test_api_server_restart_keeps_port_credentials_and_data(own_plane: LocalPlane) -> None:
    plane = own_plane
    name = f"before-{uuid.uuid4().hex[:6]}"
    port, old_pid = plane.ports["kube-apiserver"], plane.pids()["kube-apiserver"]
    with plane.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_config_map(
            "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"k": "v"})
        )
        plane.stop_component("kube-apiserver", grace_s=3)
        assert not plane.readyz() and not plane.running()
        assert "kube-apiserver" not in plane.pids() and not pid_alive(old_pid)
        with pytest.raises(Exception):  # noqa: B017 - any connection error will do
            core.list_namespace(_request_timeout=2)
        plane.start_component("kube-apiserver")
        assert plane.readyz() and plane.running()
        assert plane.ports["kube-apiserver"] == port and plane.pids()["kube-apiserver"] != old_pid
        # The same client (same kubeconfig, CA, client certificate) works again, data kept.
        assert _config_map(api, name) == {"k": "v"}


def test_clients_and_controllers_carry_on_after_a_sigkilled_api_server(
    own_plane: LocalPlane,
) -> None:
    plane = own_plane
    with plane.api_client() as api:
        core = client.CoreV1Api(api)
        took = plane.restart("kube-apiserver", down_s=1.0, sig=signal.SIGKILL)
        assert took < 60
        # The controller manager is still at work: a new namespace gets its service account.
        ns = f"after-{uuid.uuid4().hex[:6]}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        wait_for(
            lambda: any(
                sa.metadata.name == "default"
                for sa in core.list_namespaced_service_account(ns).items
            ),
            timeout_s=60,
            what="the service-account controller after the restart",
        )
        # A watch opened after the restart sees changes.
        stream = watch.Watch()
        created = f"w-{uuid.uuid4().hex[:6]}"
        core.create_namespaced_config_map(
            ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=created))
        )
        seen = [
            e["object"].metadata.name
            for e in stream.stream(core.list_namespaced_config_map, ns, timeout_seconds=5)
        ]
        assert created in seen


def test_etcd_restart_keeps_the_data(own_plane: LocalPlane) -> None:
    plane = own_plane
    name = f"etcd-{uuid.uuid4().hex[:6]}"
    with plane.api_client() as api:
        client.CoreV1Api(api).create_namespaced_config_map(
            "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"a": "b"})
        )
        plane.restart("etcd", down_s=1.0)
        wait_for(plane.readyz, timeout_s=60, what="the API server ready once etcd is back")

        def read() -> dict[str, str] | None:
            try:
                return _config_map(api, name)
            except ApiException:
                return None

        assert wait_for(read, timeout_s=30, what="the config map read back") == {"a": "b"}


def test_unknown_or_running_component_is_refused(own_plane: LocalPlane) -> None:
    with pytest.raises(PlaneError, match="no component"):
        own_plane.stop_component("kubelet")
    with pytest.raises(PlaneError, match="is running"):
        own_plane.start_component("kube-scheduler")
    with pytest.raises(ValueError, match="SIGTERM or SIGKILL"):
        own_plane.stop_component("kube-scheduler", signal.SIGSTOP)
    started = time.monotonic()
    own_plane.restart("kube-scheduler")
    assert own_plane.running() and time.monotonic() - started < 60
