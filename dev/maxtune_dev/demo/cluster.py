"""Which cluster the stack runs against: the local plane, or one named by a kubeconfig.

The stack needs three things: an administrator's kubeconfig (helm, the runner's own client), the
API server's URL and its CA (for the pod-bound tokens' kubeconfigs). A kubeconfig may carry its
CA inline; it is written to a file then, since the processes' kubeconfigs point at a file.

The operators and agents run on this machine and the webhook URL is https://127.0.0.1:<port>, so
the API server has to run on this machine too: a cluster whose server is not on loopback is
refused with that reason, rather than installed with a webhook it can never call.
"""

from __future__ import annotations

import base64
import ipaddress
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client, config
from kubernetes.client import ApiClient

from maxtune_dev.localplane import LocalPlane


class ClusterError(RuntimeError):
    """The kubeconfig cannot be used for the demo; the message says why."""


@dataclass(frozen=True)
class Cluster:
    server: str
    ca_file: Path
    kubeconfig: Path

    def api_client(self) -> ApiClient:
        configuration = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig), client_configuration=configuration
        )
        return client.ApiClient(configuration)

    @classmethod
    def of_plane(cls, plane: LocalPlane) -> Cluster:
        return cls(server=plane.server, ca_file=plane.ca_file, kubeconfig=plane.kubeconfig)

    @classmethod
    def of_kubeconfig(cls, kubeconfig: Path, folder: Path) -> Cluster:
        """The current context's cluster; refused unless its API server is on loopback."""
        try:
            text = yaml.safe_load(kubeconfig.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ClusterError(f"{kubeconfig}: cannot read it as a kubeconfig: {exc}") from None
        try:
            contexts = {c["name"]: c["context"] for c in text.get("contexts") or []}
            clusters = {c["name"]: c["cluster"] for c in text.get("clusters") or []}
            entry = clusters[contexts[text["current-context"]]["cluster"]]
            server = str(entry["server"])
        except (KeyError, TypeError, AttributeError):
            raise ClusterError(f"{kubeconfig}: no current-context with a cluster server") from None
        host = urllib.parse.urlsplit(server).hostname or ""
        if not _loopback(host):
            raise ClusterError(
                f"{kubeconfig}: the API server is {server}, not on this machine. The demo runs "
                "the operator and agents as local processes and points the webhook at "
                "https://127.0.0.1, which that API server cannot call. Use a plane on this "
                "machine (`python -m maxtune_dev.localplane up`), or install the chart for real "
                "with `helm install maxtune charts/maxtune` (and the images of the Dockerfile)."
            )
        if "certificate-authority-data" in entry:
            ca_file = folder / "cluster-ca.crt"
            ca_file.write_bytes(base64.b64decode(entry["certificate-authority-data"]))
        elif "certificate-authority" in entry:
            ca_file = (kubeconfig.parent / entry["certificate-authority"]).resolve()
        else:
            raise ClusterError(f"{kubeconfig}: the cluster entry names no certificate authority")
        return cls(server=server, ca_file=ca_file, kubeconfig=kubeconfig.resolve())


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
