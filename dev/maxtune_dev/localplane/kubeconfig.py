"""Kubeconfig files for the plane's users.

Credentials are embedded (base64 `*-data` fields) so that a kubeconfig stays
valid when copied out of the state folder, and so kubectl, helm and the Python
client read the same file without path juggling.
"""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from maxtune_dev.localplane.certs import CertKey


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def render_kubeconfig(
    server: str,
    ca_pem: bytes,
    client: CertKey,
    *,
    user: str,
    cluster: str = "maxtune-local",
    namespace: str | None = None,
) -> str:
    """A kubeconfig with one cluster, one user and one current context."""
    context: dict[str, str] = {"cluster": cluster, "user": user}
    if namespace:
        context["namespace"] = namespace
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client.cert_pem),
                    "client-key-data": _b64(client.key_pem),
                },
            }
        ],
        "contexts": [{"name": cluster, "context": context}],
        "current-context": cluster,
    }
    return yaml.safe_dump(document, sort_keys=False)


def write_kubeconfig(path: Path, text: str) -> Path:
    """Write with mode 0600: the file holds a private key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path
