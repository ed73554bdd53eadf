"""The release's operator and agent pods, each run here as the process its container would be.

Each process gets the credentials its pod would have: a token bound to that pod (for an agent,
that is its node's identity, which the agent-profile admission policy checks), the Secret and
ConfigMap files its volumes mount, its downward-API environment. The only changes are ports:
every replica and every agent renders the same port, so each gets a free one on 127.0.0.1.
Processes die with the runner (PR_SET_PDEATHSIG), even when it is SIGKILLed.

Each process is started with its ports set to 0 and tells us which ports it bound in its log
(the operator's and the agent's start-up line). Picking a free port first and passing it in
lost races on a busy machine: another process took the port between the check and the bind,
and its own /readyz answered for ours.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from kubernetes.client import ApiClient

from maxtune_dev.localplane import wait_for
from maxtune_dev.localplane.process import Proc, spawn, stop
from maxtune_dev.localrun import (
    ClusterAccess,
    LocalContainer,
    pod_token,
    pods,
    prepare,
    token_kubeconfig,
)

# How each component reports the port it bound, by the flag that would have set it.
BOUND: Final[dict[str, tuple[re.Pattern[str], ...]]] = {
    "--metrics-port": (
        re.compile(r"serving /metrics /healthz /readyz on [^\s:]+:(\d+)"),  # agent
        re.compile(r"metrics http://[^\s/]+:(\d+)/metrics"),  # operator
    ),
    "--webhook-port": (re.compile(r"webhook https://[^\s/]+:(\d+)/mutate"),),
}


@dataclass
class LocalPod:
    """One pod of the release, running here."""

    component: str
    pod: str
    node: str
    run: LocalContainer
    proc: Proc
    port_flags: Mapping[str, str] = field(default_factory=dict)  # port name -> its flag
    ports: dict[str, int] = field(default_factory=dict)  # as the process reported them

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}"

    @property
    def log(self) -> Path:
        return self.proc.log

    def alive(self) -> bool:
        return self.proc.alive()

    def bound(self) -> bool:
        """Whether the process has reported every port it serves (read from its own log)."""
        if len(self.ports) < len(self.port_flags):
            text = self.proc.own_output()
            for name, flag in self.port_flags.items():
                found = (m for pattern in BOUND[flag] if (m := pattern.search(text)))
                match = next(found, None)
                if match is not None:
                    self.ports[name] = int(match.group(1))
        return len(self.ports) == len(self.port_flags)

    def ready(self) -> bool:
        return self.alive() and self.bound() and http_status(f"{self.metrics_url}/readyz") == 200


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def scheduled_pods(
    api: ApiClient, namespace: str, component: str, count: int, timeout_s: float = 90.0
) -> list[Any]:
    """The component's `count` pods once the controllers made them and the scheduler bound them."""

    def found() -> list[Any] | None:
        listed = [p for p in pods(api, namespace, component) if p.spec.node_name]
        return listed if len(listed) >= count else None

    return sorted(
        wait_for(found, timeout_s=timeout_s, interval_s=0.5, what=f"{count} {component} pod(s)"),
        key=lambda p: p.metadata.name,
    )


def start_pod(
    api: ApiClient,
    cluster: ClusterAccess,
    pod: Any,
    container: str,
    folder: Path,
    *,
    port_flags: Mapping[str, str],
) -> LocalPod:
    """Run the pod's container here; `port_flags` maps a port name to the flag that sets it."""
    root = folder / pod.metadata.name
    root.mkdir(parents=True, exist_ok=True)
    kubeconfig = token_kubeconfig(cluster, pod_token(api, pod), root / "kubeconfig")
    replace = {flag: "0" for flag in port_flags.values()}  # the process reports what it bound
    run = prepare(api, pod, container, root / "fs", kubeconfig, replace_args=replace)
    proc = spawn(pod.metadata.name, run.argv, root / f"{container}.log", env=run.env)
    return LocalPod(container, pod.metadata.name, pod.spec.node_name, run, proc, dict(port_flags))


def wait_ready(
    local: Sequence[LocalPod],
    timeout_s: float = 120.0,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Until every process answers /readyz with 200; a process that exits fails at once."""
    deadline = time.monotonic() + timeout_s
    waiting = list(local)
    while waiting:
        for item in list(waiting):
            if not item.alive():
                raise RuntimeError(
                    f"{item.component} {item.pod} exited with {item.proc.popen.returncode}:\n"
                    f"{item.proc.log_tail(30)}"
                )
            if item.ready():
                waiting.remove(item)
                if progress is not None:
                    progress(f"{item.component} {item.pod} ready")
        if waiting and time.monotonic() > deadline:
            names = ", ".join(i.pod for i in waiting)
            tails = "\n".join(f"--- {i.log}\n{i.proc.log_tail(15)}" for i in waiting[:3])
            raise TimeoutError(f"not ready after {timeout_s:.0f}s: {names}\n{tails}")
        if waiting:
            time.sleep(0.3)


def stop_pods(local: Sequence[LocalPod], grace_s: float = 20.0) -> None:
    """SIGTERM, as the kubelet sends when the pod is deleted; SIGKILL after the grace."""
    stop([item.proc for item in local], grace_s=grace_s)
