"""The stack runner's parts that need no control plane: fleet nodes, Prometheus config, the
loopback webhook service, the kubeconfig rules, the demo's bad-input exits.

The Prometheus configuration is checked by Debian's own `promtool`, from the same package.
"""

from __future__ import annotations

import base64
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from maxtune.agent.fleetfile import load
from maxtune_dev.demo.__main__ import main
from maxtune_dev.demo.cluster import Cluster, ClusterError
from maxtune_dev.demo.fleet import FLEET_LABEL, GPU_PRESENT, fake_nodes
from maxtune_dev.demo.prometheus import JOBS, Target, render_config, write_targets
from maxtune_dev.demo.promfetch import ensure_prometheus
from maxtune_dev.demo.service import Forwarder
from maxtune_dev.localplane.process import free_port

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "examples" / "fleets" / "demo.yaml"


def test_fake_nodes_advertise_what_the_device_plugin_would() -> None:
    nodes = {n.name: n for n in fake_nodes(load(FLEET), cpu_nodes=1)}
    assert nodes["gpu-h100-0"].capacity == {"nvidia.com/gpu": 8}
    # MIG on the first GPU only: three whole GPUs and the first one's slices (mixed strategy).
    assert nodes["gpu-mig-0"].capacity == {
        "nvidia.com/gpu": 3,
        "nvidia.com/mig-1g.10gb": 1,
        "nvidia.com/mig-3g.40gb": 2,
    }
    assert nodes["gpu-mig-all-0"].capacity == {"nvidia.com/mig-7g.80gb": 2}
    assert nodes["gpu-t4-0"].labels["nvidia.com/gpu.product"] == "Tesla-T4"
    assert nodes["gpu-a100-0"].labels[GPU_PRESENT] == "true"
    assert nodes["cpu-0"].capacity == {} and GPU_PRESENT not in nodes["cpu-0"].labels
    # Our mark is outside maxtune.io/: the operator and the uninstall cleanup own that prefix.
    assert all(n.labels[FLEET_LABEL] == "demo" for n in nodes.values())
    assert not any(k.startswith("maxtune.io/") for n in nodes.values() for k in n.labels)


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    for job in JOBS:
        write_targets(tmp_path, job, [Target("127.0.0.1:9400", {"node": "gpu-a", "pod": "p"})])
    config = tmp_path / "prometheus.yml"
    config.write_text(render_config(tmp_path))
    promtool = ensure_prometheus().with_name("promtool")
    done = subprocess.run(
        [str(promtool), "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    targets = yaml.safe_load((tmp_path / "maxtune-agent.json").read_text())
    assert targets == [{"targets": ["127.0.0.1:9400"], "labels": {"node": "gpu-a", "pod": "p"}}]


@pytest.fixture
def servers() -> Iterator[list[int]]:
    """Two loopback servers that answer each connection with their own port number."""
    listening: list[socket.socket] = []
    for _ in range(2):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        listening.append(sock)

    def serve(sock: socket.socket) -> None:
        port = sock.getsockname()[1]
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(16)
                conn.sendall(str(port).encode())

    for sock in listening:
        threading.Thread(target=serve, args=(sock,), daemon=True).start()
    yield [s.getsockname()[1] for s in listening]
    for sock in listening:
        sock.close()


def _ask(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"hello")
        return conn.recv(16).decode()


def test_webhook_service_spreads_connections_and_skips_a_dead_replica(
    servers: list[int],
) -> None:
    forwarder = Forwarder(free_port()).start()
    try:
        forwarder.set_backends(servers)
        answers = {_ask(forwarder.port) for _ in range(4)}
        assert answers == {str(p) for p in servers}
        dead = free_port()  # nothing listens there
        forwarder.set_backends([dead, servers[0]])
        assert {_ask(forwarder.port) for _ in range(4)} == {str(servers[0])}
    finally:
        forwarder.stop()


def _kubeconfig(path: Path, server: str) -> Path:
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nfake\n").decode()
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": server, "certificate-authority-data": ca}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def test_a_cluster_on_loopback_is_used_with_its_inline_ca(tmp_path: Path) -> None:
    path = _kubeconfig(tmp_path / "kc", "https://127.0.0.1:6443")
    cluster = Cluster.of_kubeconfig(path, tmp_path)
    assert cluster.server == "https://127.0.0.1:6443"
    assert cluster.ca_file.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")


def test_a_remote_cluster_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = _kubeconfig(tmp_path / "kc", "https://10.0.0.5:6443")
    with pytest.raises(ClusterError, match=r"not on this machine.*127\.0\.0\.1"):
        Cluster.of_kubeconfig(path, tmp_path)


def test_demo_refuses_bad_input_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--no-wait", "--fleet", str(tmp_path / "missing.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    remote = _kubeconfig(tmp_path / "kc", "https://192.0.2.1:6443")
    assert main(["run", "--no-wait", "--kubeconfig", str(remote)]) == 2
    assert "not on this machine" in capsys.readouterr().err


def test_a_checkout_under_a_mounted_folder_keeps_its_program_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clone in /tmp/x runs pods that mount an emptyDir at /tmp: only the pod's own paths move.

    The program (this machine's `maxtune`) once got rewritten into the volume like the pod's
    paths, and every local run from a checkout under /tmp failed to start.
    """
    from types import SimpleNamespace

    from maxtune_dev.localrun import prepare

    monkeypatch.setattr("sys.executable", "/tmp/fresh/.venv/bin/python")
    container = SimpleNamespace(
        name="operator",
        command=["maxtune"],
        args=["operator", "--tls-cert-file", "/tmp/certs/tls.crt", "--metrics-port", "8080"],
        volume_mounts=[SimpleNamespace(name="tmp", mount_path="/tmp")],
        env=[SimpleNamespace(name="TMPDIR", value="/tmp", value_from=None)],
    )
    pod = SimpleNamespace(
        metadata=SimpleNamespace(namespace="maxtune-system", name="op-0"),
        spec=SimpleNamespace(
            containers=[container],
            volumes=[SimpleNamespace(name="tmp", secret=None, config_map=None)],
        ),
    )
    root = tmp_path / "fs"
    run = prepare(
        None,  # type: ignore[arg-type]  # an emptyDir needs no API call
        pod,
        "operator",
        root,
        tmp_path / "kubeconfig",
        replace_args={"--metrics-port": "31000"},
    )
    assert run.argv[0] == "/tmp/fresh/.venv/bin/maxtune"
    assert run.argv[1:4] == ["operator", "--kubeconfig", str(tmp_path / "kubeconfig")]
    assert run.argv[run.argv.index("--tls-cert-file") + 1] == str(root / "tmp/certs/tls.crt")
    assert run.argv[-1] == "31000"
    assert run.env["TMPDIR"] == str(root / "tmp")
