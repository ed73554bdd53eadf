"""Start-up and shutdown guarantees: busy ports, concurrent planes, no leftovers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from maxtune_dev.localplane import LocalPlane, wait_for
from maxtune_dev.localplane.process import free_port, pid_alive

pytestmark = [pytest.mark.plane, pytest.mark.slow]


def _all_dead(pids: list[int], timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(pid_alive(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_port_in_use_is_not_a_failure(busy_port: int) -> None:
    # etcd takes the first two picks, the API server the first pick after etcd
    # is up (the 5th, after etcd's retry): both are handed the busy port once.
    picks = iter([busy_port, free_port(), free_port(), free_port(), busy_port])

    def picker() -> int:
        return next(picks, None) or free_port()

    with LocalPlane(port_picker=picker) as plane:
        assert busy_port not in plane.ports.values()
        for component in ("etcd", "kube-apiserver"):
            log = (plane.state_dir / "logs" / f"{component}.log").read_text()
            assert "address already in use" in log
            assert "a port was taken, new ports" in log
        assert plane.readyz()


def test_two_planes_at_once_and_stop_leaves_no_process(plane: LocalPlane) -> None:
    second = LocalPlane().start()
    try:
        assert second.state_dir != plane.state_dir
        assert not set(second.ports.values()) & set(plane.ports.values())
        assert second.readyz() and plane.readyz()
        pids = list(second.pids().values())
        assert len(pids) == 5 and all(pid_alive(pid) for pid in pids)
        state = second.state_dir
    finally:
        second.stop()
    assert _all_dead(pids, timeout_s=1.0)  # stop() returns only once they are gone
    assert not state.exists()  # a throwaway plane leaves no state behind
    assert plane.readyz()  # the session plane did not notice


def test_a_killed_owner_takes_the_plane_down(tmp_path: Path) -> None:
    """SIGKILL leaves no chance to clean up: PR_SET_PDEATHSIG must do it."""
    script = textwrap.dedent(
        """
        import json, sys, time
        from maxtune_dev.localplane import LocalPlane
        plane = LocalPlane().start()
        print(json.dumps(plane.pids()), flush=True)
        time.sleep(600)
        """
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert owner.stdout is not None
        pids = list(json.loads(owner.stdout.readline()).values())
        assert len(pids) == 5 and all(pid_alive(pid) for pid in pids)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert _all_dead(pids), "components outlived their owner"


def test_cli_up_env_status_down(tmp_path: Path) -> None:
    name = f"t{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "MAXTUNE_RUN_DIR": str(tmp_path)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "maxtune_dev.localplane", *args, "--name", name],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    up = cli("up")
    assert up.returncode == 0, up.stdout + up.stderr
    kubeconfig = tmp_path / "plane" / name / "kubeconfig"
    assert f"export KUBECONFIG={kubeconfig}" in up.stdout
    info = json.loads((tmp_path / "plane" / name / "ready.json").read_text())
    pids = [info["pid"], *info["pids"].values()]
    try:
        assert cli("env").stdout.strip() == f"export KUBECONFIG={kubeconfig}"
        status = cli("status")
        assert status.returncode == 0 and status.stdout.count("running") == 5
        assert "already up" in cli("up").stdout
        with client.ApiClient(_configuration(kubeconfig)) as api:
            assert client.VersionApi(api).get_code().git_version == info["versions"]["kubernetes"]
    finally:
        down = cli("down")
    assert down.returncode == 0 and "stopped" in down.stdout
    assert _all_dead(pids)
    assert cli("status").returncode == 3
    assert cli("env").returncode == 1


def _configuration(kubeconfig: Path) -> client.Configuration:
    from kubernetes import config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return configuration


def test_namespace_fixture_gives_a_usable_namespace(namespace: str, k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    assert core.read_namespace(namespace).status.phase == "Active"
    wait_for(
        lambda: core.read_namespaced_config_map("kube-root-ca.crt", namespace),
        timeout_s=30,
        what="the root CA published into the namespace",
    )
