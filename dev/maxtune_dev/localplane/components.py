"""Command lines of the plane's components, as pure functions of ports and file paths.

Kept apart from the process handling so the flags can be read (and unit-tested)
in one place. Every listener binds 127.0.0.1. The flags that matter for
maxtune's tests are commented where they are set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from maxtune_dev.localplane.certs import FRONT_PROXY_USER, PkiFiles
from maxtune_dev.localplane.kwok import KWOK_SELECTOR, NODE_LEASE_SECONDS, stages_file

HOST = "127.0.0.1"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Service and pod addresses are data in a kwok cluster (nothing runs behind them),
# but the API server does dial a Service's cluster IP to reach an in-cluster
# webhook. Loopback ranges make such a dial fail fast on this machine instead of
# sending packets to a private network.
SERVICE_CIDR = "127.96.0.0/16"
POD_CIDR = "127.16.0.0/16"
NODE_IP = HOST


@dataclass(frozen=True)
class Layout:
    """The files one plane's components read and write, all under its state folder."""

    state: Path
    pki: PkiFiles

    @property
    def etcd_data(self) -> Path:
        return self.state / "etcd"

    def kubeconfig(self, user: str) -> Path:
        """`admin` is the one handed to people and tests; the rest belong to components."""
        if user == "admin":
            return self.state / "kubeconfig"
        return self.state / "kubeconfigs" / f"{user}.kubeconfig"

    def log(self, component: str) -> Path:
        return self.state / "logs" / f"{component}.log"


def etcd_args(binary: Path, layout: Layout, client_port: int, peer_port: int) -> list[str]:
    client = f"http://{HOST}:{client_port}"
    peer = f"http://{HOST}:{peer_port}"
    return [
        str(binary),
        "--name=localplane",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=localplane={peer}",
        "--initial-cluster-state=new",
        # Test data is throwaway: skipping fsync keeps a 2-core CI box responsive.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_args(binary: Path, layout: Layout, port: int, etcd_client_port: int) -> list[str]:
    pki = layout.pki
    return [
        str(binary),
        f"--etcd-servers=http://{HOST}:{etcd_client_port}",
        f"--bind-address={HOST}",
        f"--advertise-address={HOST}",
        f"--secure-port={port}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}",
        # Token issuance and review: the audience list makes TokenRequest work
        # for the default audience, and pod-bound tokens carry the node name.
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={pki.sa_public}",
        f"--service-account-signing-key-file={pki.sa_private}",
        f"--api-audiences={SA_ISSUER}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # Real authorization: RBAC for people and controllers, Node for kubelets.
        "--authorization-mode=Node,RBAC",
        # Added to the defaults, which already include MutatingAdmissionWebhook,
        # ValidatingAdmissionWebhook and ValidatingAdmissionPolicy in 1.36.
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        # The aggregation layer (requestheader authentication). Without it every
        # delegating component logs a missing CA bundle, and aggregated APIs
        # such as metrics could not be served.
        f"--requestheader-client-ca-file={pki.front_proxy_ca}",
        f"--requestheader-allowed-names={FRONT_PROXY_USER}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki.front_proxy_cert}",
        f"--proxy-client-key-file={pki.front_proxy_key}",
        # No `kubernetes` Endpoints: they could only point at loopback, which
        # Endpoints validation rejects (the error would repeat in the log).
        "--endpoint-reconciler-type=none",
        "--profiling=false",
    ]


def controller_manager_args(binary: Path, layout: Layout, port: int) -> list[str]:
    pki = layout.pki
    kubeconfig = layout.kubeconfig("controller-manager")
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={HOST}",
        f"--secure-port={port}",
        "--leader-elect=false",
        # Each controller acts as its own service account, as in a real cluster,
        # so RBAC problems show up here the way they would there.
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki.sa_private}",
        f"--root-ca-file={pki.ca_cert}",
        f"--cluster-signing-cert-file={pki.ca_cert}",
        f"--cluster-signing-key-file={pki.ca_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # Default set: namespace, serviceaccount(-token), garbage collector,
        # deployment/replicaset, daemonset, job, node-lifecycle (kwok renews
        # node leases, so nothing is evicted), endpoints and the rest.
        "--controllers=*",
        "--profiling=false",
    ]


def scheduler_args(binary: Path, layout: Layout, port: int) -> list[str]:
    kubeconfig = layout.kubeconfig("scheduler")
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={HOST}",
        f"--secure-port={port}",
        "--leader-elect=false",
        "--profiling=false",
    ]


def kwok_args(binary: Path, layout: Layout) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={layout.kubeconfig('kwok')}",
        f"--config={stages_file()}",
        f"--manage-nodes-with-annotation-selector={KWOK_SELECTOR}",
        f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
        f"--node-ip={NODE_IP}",
        f"--cidr={POD_CIDR}",
    ]
