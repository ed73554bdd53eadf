"""Run an installed pod's container as a local process, the way a kubelet would have run it.

The local plane has no container runtime: kwok marks pods Running without running anything. To
run the chart's real pod specs anyway, we take the pod the controllers created (so it has a
name, a uid and a node), request a token bound to it (what the kubelet would project: it names
the pod's node, which the agent-profile admission policy checks), write the Secret and ConfigMap
volumes it mounts into a folder, resolve the downward-API environment, and start
`command + args` with paths rewritten into that folder and `--kubeconfig` added.

The chart tests, the end-to-end test and the demo all use this one kit.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from kubernetes import client
from kubernetes.client import ApiClient

TOKEN_SECONDS = 3600


class ClusterAccess(Protocol):
    """Where the API server is and which CA signs it (a LocalPlane is one)."""

    @property
    def server(self) -> str: ...

    @property
    def ca_file(self) -> Path: ...


def kapi(kind: str, api_client: ApiClient) -> Any:
    """`kapi("CoreV1Api", k8s)`: a client typed Any on purpose.

    The generated models mark every field Optional, also those the API server always sets
    (metadata.name of a read object); callers read them directly and fail loudly if absent.
    """
    return getattr(client, kind)(api_client)


def pod_token(api: ApiClient, pod: Any, *, audience: str | None = None) -> str:
    """A token for the pod's service account, bound to the pod (it names the pod's node)."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(
            audiences=[audience] if audience else [],
            expiration_seconds=TOKEN_SECONDS,
            bound_object_ref=client.V1BoundObjectReference(
                kind="Pod", api_version="v1", name=pod.metadata.name, uid=pod.metadata.uid
            ),
        )
    )
    answer = kapi("CoreV1Api", api).create_namespaced_service_account_token(
        pod.spec.service_account_name, pod.metadata.namespace, request
    )
    token: str = answer.status.token
    return token


def unbound_token(api: ApiClient, namespace: str, account: str) -> str:
    """A token of the account bound to nothing: it carries no pod and no node."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=TOKEN_SECONDS)
    )
    answer = kapi("CoreV1Api", api).create_namespaced_service_account_token(
        account, namespace, request
    )
    token: str = answer.status.token
    return token


def token_kubeconfig(cluster: ClusterAccess, token: str, path: Path) -> Path:
    """A kubeconfig that authenticates with `token` only (no client certificate)."""
    text = (
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: plane, cluster: {{server: '{cluster.server}', "
        f"certificate-authority: '{cluster.ca_file}'}}}}]\n"
        f"users: [{{name: sa, user: {{token: '{token}'}}}}]\n"
        "contexts: [{name: sa, context: {cluster: plane, user: sa}}]\n"
        "current-context: sa\n"
    )
    path.write_text(text)
    path.chmod(0o600)
    return path


def token_client(cluster: ClusterAccess, token: str) -> ApiClient:
    configuration = client.Configuration()
    configuration.host = cluster.server
    configuration.ssl_ca_cert = str(cluster.ca_file)
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return ApiClient(configuration)


def _field(pod: Any, path: str) -> str:
    values = {
        "metadata.name": pod.metadata.name,
        "metadata.namespace": pod.metadata.namespace,
        "metadata.uid": pod.metadata.uid,
        "spec.nodeName": pod.spec.node_name,
        "spec.serviceAccountName": pod.spec.service_account_name,
    }
    if path not in values:
        raise ValueError(f"downward-API field {path} is not emulated")
    return str(values[path])


def _volume_files(api: ApiClient, namespace: str, volume: Any) -> dict[str, bytes]:
    core = kapi("CoreV1Api", api)
    if volume.secret is not None:
        secret = core.read_namespaced_secret(volume.secret.secret_name, namespace)
        data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        items = volume.secret.items
    elif volume.config_map is not None:
        config_map = core.read_namespaced_config_map(volume.config_map.name, namespace)
        data = {k: v.encode() for k, v in (config_map.data or {}).items()}
        items = volume.config_map.items
    else:
        return {}  # emptyDir and the like: a fresh empty folder
    if items:
        return {item.path: data[item.key] for item in items}
    return data


@dataclass
class LocalContainer:
    """What it takes to run one container of an installed pod here."""

    argv: list[str]
    env: dict[str, str]
    root: Path
    mounts: dict[str, Path] = field(default_factory=dict)

    def path(self, in_pod: str) -> Path:
        """Where a path inside the pod lives on this machine."""
        for mount, local in sorted(self.mounts.items(), key=lambda kv: -len(kv[0])):
            if in_pod == mount or in_pod.startswith(mount.rstrip("/") + "/"):
                return local / in_pod[len(mount) :].lstrip("/")
        raise KeyError(f"{in_pod} is not under a mounted volume")

    def local(self, value: str) -> str:
        """`value` itself, or where it lives here when it is a path under a mounted volume."""
        return (
            str(self.path(value)) if value.startswith("/") and _under(value, self.mounts) else value
        )

    def start(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root
        )


def prepare(
    api: ApiClient,
    pod: Any,
    container_name: str,
    root: Path,
    kubeconfig: Path,
    *,
    replace_args: Mapping[str, str] | None = None,
) -> LocalContainer:
    """Materialise the container's volumes under `root` and rewrite its command line for here.

    `replace_args` swaps flag values (e.g. a free port for --metrics-port), so several
    containers rendered alike can run side by side on 127.0.0.1. Environment values that are
    paths under a mounted volume (HOME, cache folders) are rewritten like the arguments, so the
    process never writes outside `root`.
    """
    spec = pod.spec
    main = next(c for c in spec.containers if c.name == container_name)
    volumes = {v.name: v for v in spec.volumes or []}
    mounts: dict[str, Path] = {}
    for mount in main.volume_mounts or []:
        if mount.mount_path.startswith("/var/run/secrets/kubernetes.io"):
            continue  # the service-account token: replaced by the kubeconfig
        local = root / mount.mount_path.lstrip("/")
        local.mkdir(parents=True, exist_ok=True)
        for name, content in _volume_files(
            api, pod.metadata.namespace, volumes[mount.name]
        ).items():
            target = local / name
            target.write_bytes(content)
            target.chmod(0o600)
        mounts[mount.mount_path] = local
    run = LocalContainer(argv=[], env={}, root=root, mounts=mounts)

    args = [run.local(a) for a in main.args or []]
    for flag_name, value in (replace_args or {}).items():  # this machine's values: kept as given
        args[args.index(flag_name) + 1] = value
    command = [run.local(c) for c in main.command or []]
    # The program itself is this machine's (never a path inside the pod): it is not
    # rewritten like the pod's own paths, or a checkout under a folder the pod mounts
    # (an emptyDir at /tmp, a clone in /tmp/x) would be looked for inside the volume.
    if command and command[0] == "maxtune":
        command[0] = str(Path(sys.executable).with_name("maxtune"))
    elif command and command[0] == "python":
        command[0] = sys.executable
    run.argv = command + args
    if run.argv[0].endswith("maxtune") and len(run.argv) > 1:
        run.argv[2:2] = ["--kubeconfig", str(kubeconfig)]

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root)}
    for item in main.env or []:
        if item.value_from is not None:
            env[item.name] = _field(pod, item.value_from.field_ref.field_path)
        else:
            env[item.name] = run.local(item.value or "")
    env["KUBECONFIG"] = str(kubeconfig)
    run.env = env
    return run


def _under(path: str, mounts: Mapping[str, Path]) -> bool:
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)


def pods(api: ApiClient, namespace: str, component: str) -> list[Any]:
    """The live (not terminating) pods of one chart component in `namespace`."""
    listed = kapi("CoreV1Api", api).list_namespaced_pod(
        namespace, label_selector=f"app.kubernetes.io/component={component}"
    )
    return [p for p in listed.items if p.metadata.deletion_timestamp is None]


def flag_value(argv: Sequence[str], name: str) -> str:
    return argv[list(argv).index(name) + 1]
