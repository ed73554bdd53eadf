"""LocalPlane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on loopback.

Start order follows the dependencies: etcd, then the API server (ready on
/readyz), then the controllers, the scheduler and kwok together. Ports are
picked free and a component that loses a bind race is restarted on new ports,
so a busy machine or a second plane never makes start-up fail. `start()`
returns once the API server is ready, the scheduler and controller manager
answer their health checks, and the service-account controller has made the
`default` service account (pods cannot be created before it exists).

For fault tests, `restart(name)` (or `stop_component` and `start_component`)
takes one component down and brings it back on the same ports with the same
flags, certificates and data, as a control-plane process restarted in place.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from kubernetes import client, config
from kubernetes.client import ApiClient

from maxtune_dev.localplane import components as comp
from maxtune_dev.localplane import paths
from maxtune_dev.localplane.build import Binaries, tail
from maxtune_dev.localplane.build import binaries as cached_binaries
from maxtune_dev.localplane.certs import CLIENT_USERS, PkiFiles, write_pki
from maxtune_dev.localplane.kubeconfig import render_kubeconfig, write_kubeconfig
from maxtune_dev.localplane.process import Proc, free_port, pid_alive, spawn, stop

ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
BIND_ATTEMPTS = 5
# What a plane writes into its state folder (and clears there on start).
OWN_ENTRIES = ("etcd", "pki", "logs", "kubeconfigs", "kubeconfig", "kwok-home", "owner.pid")
_live: set[LocalPlane] = set()
_live_lock = threading.Lock()


class PlaneError(RuntimeError):
    """The plane could not start; the message carries the tails of the component logs."""


def _stop_all_at_exit() -> None:
    with _live_lock:
        planes = list(_live)
    for plane in planes:
        plane.stop()


atexit.register(_stop_all_at_exit)


def _http_ok(url: str, context: ssl.SSLContext | None, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


class LocalPlane:
    """A real Kubernetes control plane for tests and the demo; use it as a context manager.

    `state_dir` None makes a throwaway folder under `.run/tmp/` that is removed
    on stop (unless `keep_state`); a given folder is wiped on start and kept.
    `port_picker` exists so a test can hand out a port that is in use.
    `extra_args` appends flags to a component's command line, by component name
    (a later flag wins in the Go binaries): the fleet benchmarks slow kwok's lease
    renewals and raise the controller manager's API rate for 2,000 nodes on 2 cores.
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        binaries: Binaries | None = None,
        port_picker: Callable[[], int] = free_port,
        keep_state: bool = False,
        start_timeout_s: float = 180.0,
        extra_args: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self._given_state = state_dir
        self._binaries = binaries
        self._pick = port_picker
        self._keep_state = keep_state or state_dir is not None
        self._timeout = start_timeout_s
        unknown = set(extra_args or {}) - set(ORDER)
        if unknown:
            raise ValueError(f"extra_args for unknown components {sorted(unknown)}: use {ORDER}")
        self._extra_args = {name: tuple(args) for name, args in (extra_args or {}).items()}
        self._procs: dict[str, Proc] = {}
        self._ports: dict[str, int] = {}
        # How each component was last started (its argv depends only on these), so
        # `stop_component`/`start_component` can bring it back exactly as it was.
        self._specs: dict[str, tuple[_Spec, dict[str, int]]] = {}
        self._state: Path | None = None
        self._pki: PkiFiles | None = None
        self.timings: dict[str, float] = {}

    # -- public surface ---------------------------------------------------

    @property
    def state_dir(self) -> Path:
        if self._state is None:
            raise PlaneError("the plane has not been started")
        return self._state

    @property
    def binaries(self) -> Binaries:
        if self._binaries is None:
            self._binaries = cached_binaries()
        return self._binaries

    @property
    def kubeconfig(self) -> Path:
        """The administrator's kubeconfig (system:masters), for kubectl, helm and tests."""
        return self._layout().kubeconfig("admin")

    @property
    def server(self) -> str:
        return f"https://{comp.HOST}:{self.ports['kube-apiserver']}"

    @property
    def ca_file(self) -> Path:
        return self._require_pki().ca_cert

    @property
    def ports(self) -> dict[str, int]:
        return dict(self._ports)

    @property
    def extra_args(self) -> dict[str, tuple[str, ...]]:
        """The flags appended to each component's command line (see the class docstring)."""
        return dict(self._extra_args)

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self._procs.items()}

    def env(self) -> dict[str, str]:
        """What to export so kubectl and helm talk to this plane."""
        return {"KUBECONFIG": str(self.kubeconfig)}

    def readyz(self) -> bool:
        """Whether the API server answers /readyz with 200 right now."""
        return _http_ok(f"{self.server}/readyz", self._admin_context())

    def running(self) -> bool:
        """Every component is up (one taken down by `stop_component` counts as not running)."""
        return (
            bool(self._procs)
            and self._procs.keys() == self._specs.keys()
            and all(proc.alive() for proc in self._procs.values())
        )

    def api_client(self) -> ApiClient:
        """A kubernetes.client.ApiClient for the administrator (a new one per call)."""
        configuration = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig), client_configuration=configuration
        )
        return client.ApiClient(configuration)

    def log_tails(self, lines: int = 40) -> dict[str, str]:
        """The last lines of every component's log, keyed by component, in start order."""
        if self._state is None:
            return {}
        return {
            name: tail(self._log_path(name), lines)
            for name in ORDER
            if self._log_path(name).exists()
        }

    def format_log_tails(self, lines: int = 40) -> str:
        return "\n".join(
            f"----- {name} ({self._log_path(name)}) -----\n{text}"
            for name, text in self.log_tails(lines).items()
        )

    # -- lifecycle --------------------------------------------------------

    def __enter__(self) -> LocalPlane:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalPlane:
        if self._procs:
            raise PlaneError("the plane is already started")
        started = time.monotonic()
        binaries = self.binaries
        self._state = self._prepare_state()
        self._pki = write_pki(self._state / "pki")
        with _live_lock:
            _live.add(self)
        try:
            self._start_etcd(binaries)
            self.timings["etcd_s"] = time.monotonic() - started
            self._start_apiserver(binaries)
            self.timings["readyz_s"] = time.monotonic() - started
            self._start_controllers(binaries)
            self.timings["controllers_healthy_s"] = time.monotonic() - started
            self._wait_for_default_service_account()
        except BaseException:
            self.stop(keep_state=True)
            raise
        self.timings["ready_s"] = time.monotonic() - started
        return self

    def stop(self, *, keep_state: bool | None = None) -> None:
        """Stop every component (SIGTERM, then SIGKILL after a grace period); idempotent."""
        # In tiers: the API server stalls its shutdown while etcd is going away
        # under it, and clients are best gone before the server they talk to.
        for tier in (
            ("kwok", "kube-scheduler", "kube-controller-manager"),
            ("kube-apiserver",),
            ("etcd",),
        ):
            stop([self._procs[name] for name in tier if name in self._procs])
        self._procs.clear()
        self._specs.clear()
        with _live_lock:
            _live.discard(self)
        keep = self._keep_state if keep_state is None else keep_state
        if not keep and self._state is not None and self._given_state is None:
            shutil.rmtree(self._state, ignore_errors=True)

    # -- faults -----------------------------------------------------------

    def stop_component(
        self, name: str, sig: signal.Signals = signal.SIGTERM, *, grace_s: float = 10.0
    ) -> None:
        """Take one component down (SIGTERM, SIGKILL after `grace_s`; or SIGKILL) and keep it down.

        The API server stops listening at once on SIGTERM but drains open
        watches before it exits, so a plane with clients takes the whole grace.

        Its ports, flags, certificates and data stay as they were, so
        `start_component` brings back the same server at the same address:
        what clients see when a control-plane process restarts in place.
        """
        if name not in self._specs:
            raise PlaneError(f"no component {name!r} was started (have {sorted(self._specs)})")
        if sig not in (signal.SIGTERM, signal.SIGKILL):
            raise ValueError(f"stop with SIGTERM or SIGKILL, not {sig.name}")
        proc = self._procs.pop(name, None)
        if proc is None:
            return
        if sig == signal.SIGKILL:  # no chance to shut down cleanly (a crash, an OOM kill)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
        stop([proc], grace_s)  # SIGTERM and the grace period, or only the reaping after SIGKILL

    def start_component(self, name: str, *, attempts: int = BIND_ATTEMPTS) -> None:
        """Start a component that `stop_component` took down, on its old ports; wait until ready.

        Ports cannot move (kubeconfigs and clients name them), so a port still
        held by the old process's socket is retried on the same port. etcd keeps
        its data (the reset that a first start does is not repeated).
        """
        if name not in self._specs:
            raise PlaneError(f"no component {name!r} was started (have {sorted(self._specs)})")
        if name in self._procs:
            raise PlaneError(f"{name} is running")
        spec, ports = self._specs[name]
        for attempt in range(1, attempts + 1):
            self._procs[name] = spawn(
                name, self._argv(spec, ports), self._log_path(name), env=spec.env
            )
            outcome = self._wait(spec)
            if outcome == "ready":
                return
            if outcome == "port-in-use" and attempt < attempts:
                stop([self._procs.pop(name)])
                time.sleep(0.5 * attempt)
                continue
            raise PlaneError(f"{name} did not come back ({outcome}):\n{self.format_log_tails()}")

    def restart(
        self,
        name: str,
        *,
        down_s: float = 0.0,
        sig: signal.Signals = signal.SIGTERM,
        grace_s: float = 10.0,
    ) -> float:
        """Stop one component, leave it down `down_s` seconds, start it again; the time it took."""
        began = time.monotonic()
        self.stop_component(name, sig, grace_s=grace_s)
        time.sleep(down_s)
        self.start_component(name)
        return time.monotonic() - began

    # -- internals --------------------------------------------------------

    def _require_pki(self) -> PkiFiles:
        if self._pki is None:
            raise PlaneError("the plane has not been started")
        return self._pki

    def _admin_context(self) -> ssl.SSLContext:
        pki = self._require_pki()
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.folder / "admin.crt"), str(pki.folder / "admin.key"))
        return context

    def _layout(self) -> comp.Layout:
        return comp.Layout(self.state_dir, self._require_pki())

    def _log_path(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def _prepare_state(self) -> Path:
        if self._given_state is not None:
            state = self._given_state
            state.mkdir(parents=True, exist_ok=True)
            for entry in OWN_ENTRIES:  # never wipe a folder we do not own whole
                target = state / entry
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)
            return state
        root = paths.run_dir() / "tmp"
        root.mkdir(parents=True, exist_ok=True)
        _prune_abandoned(root)
        state = Path(tempfile.mkdtemp(prefix="plane-", dir=root))
        (state / "owner.pid").write_text(f"{os.getpid()}\n")
        return state

    def _start_group(self, specs: Sequence[_Spec]) -> None:
        """Start components together, then wait for each; a lost bind race restarts it."""
        for spec in specs:
            self._spawn(spec)
        for spec in specs:
            for attempt in range(1, BIND_ATTEMPTS + 1):
                outcome = self._wait(spec)
                if outcome == "ready":
                    break
                if outcome == "port-in-use" and attempt < BIND_ATTEMPTS:
                    stop([self._procs[spec.name]])
                    with self._log_path(spec.name).open("a") as handle:
                        handle.write(f"\n==> {spec.name}: a port was taken, new ports\n")
                    self._spawn(spec)
                    continue
                raise PlaneError(
                    f"{spec.name} did not become ready ({outcome}):\n{self.format_log_tails()}"
                )

    def _spawn(self, spec: _Spec) -> None:
        ports: dict[str, int] = {}
        while len(ports) < len(spec.port_names):
            port = self._pick()
            if port not in ports.values():
                ports[spec.port_names[len(ports)]] = port
        if spec.before is not None:
            spec.before()
        self._ports.update(ports)
        self._specs[spec.name] = (spec, ports)
        self._procs[spec.name] = spawn(
            spec.name, self._argv(spec, ports), self._log_path(spec.name), env=spec.env
        )

    def _argv(self, spec: _Spec, ports: dict[str, int]) -> list[str]:
        return [*spec.args(ports), *self._extra_args.get(spec.name, ())]

    def _wait(self, spec: _Spec) -> str:
        proc = self._procs[spec.name]
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if spec.ready is None or spec.ready(self._ports):
                return "ready"
            if not proc.alive():
                if "address already in use" in proc.own_output():
                    return "port-in-use"
                return f"exited with code {proc.popen.returncode}"
            time.sleep(0.2)
        return f"not ready after {self._timeout:.0f}s"

    def _start_etcd(self, binaries: Binaries) -> None:
        layout = self._layout()

        def reset() -> None:  # a half-started member remembers its peer URL
            shutil.rmtree(layout.etcd_data, ignore_errors=True)

        self._start_group(
            [
                _Spec(
                    "etcd",
                    ("etcd", "etcd-peer"),
                    lambda p: comp.etcd_args(binaries.etcd, layout, p["etcd"], p["etcd-peer"]),
                    lambda p: _http_ok(f"http://{comp.HOST}:{p['etcd']}/health", None),
                    before=reset,
                )
            ]
        )

    def _start_apiserver(self, binaries: Binaries) -> None:
        layout = self._layout()
        pki = self._require_pki()
        context = self._admin_context()
        etcd_port = self._ports["etcd"]
        self._start_group(
            [
                _Spec(
                    "kube-apiserver",
                    ("kube-apiserver",),
                    lambda p: comp.apiserver_args(
                        binaries.kube_apiserver, layout, p["kube-apiserver"], etcd_port
                    ),
                    lambda p: _http_ok(
                        f"https://{comp.HOST}:{p['kube-apiserver']}/readyz", context
                    ),
                )
            ]
        )
        for stem in CLIENT_USERS:
            pair = pki.clients[stem]
            text = render_kubeconfig(self.server, pki.ca.cert_pem, pair, user=CLIENT_USERS[stem])
            write_kubeconfig(layout.kubeconfig(stem), text)

    def _start_controllers(self, binaries: Binaries) -> None:
        """KCM, scheduler and kwok together; the first two must answer /healthz."""
        layout = self._layout()
        insecure = ssl.create_default_context()  # they serve self-signed certificates
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE

        def healthz(name: str) -> Callable[[dict[str, int]], bool]:
            return lambda p: _http_ok(f"https://{comp.HOST}:{p[name]}/healthz", insecure)

        kcm, scheduler = "kube-controller-manager", "kube-scheduler"
        self._start_group(
            [
                _Spec(
                    kcm,
                    (kcm,),
                    lambda p: comp.controller_manager_args(
                        binaries.kube_controller_manager, layout, p[kcm]
                    ),
                    healthz(kcm),
                ),
                _Spec(
                    scheduler,
                    (scheduler,),
                    lambda p: comp.scheduler_args(binaries.kube_scheduler, layout, p[scheduler]),
                    healthz(scheduler),
                ),
                # kwok also reads ~/.kwok/kwok.yaml when it exists: give it a HOME of
                # its own so a person's kwok set-up never leaks into the plane.
                _Spec(
                    "kwok",
                    (),
                    lambda _: comp.kwok_args(binaries.kwok, layout),
                    None,
                    env={**os.environ, "HOME": str(layout.state / "kwok-home")},
                ),
            ]
        )

    def _wait_for_default_service_account(self) -> None:
        """Pods are refused until the service-account controller has made `default`."""
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            deadline = time.monotonic() + self._timeout
            while time.monotonic() < deadline:
                if not self.running():
                    raise PlaneError(f"a component exited:\n{self.format_log_tails()}")
                accounts = core.list_namespaced_service_account("default")
                if any(sa.metadata and sa.metadata.name == "default" for sa in accounts.items):
                    return
                time.sleep(0.25)
        raise PlaneError(f"no default service account:\n{self.format_log_tails()}")


@dataclass(frozen=True)
class _Spec:
    """How to start one component: its port names, its argv and its readiness check."""

    name: str
    port_names: tuple[str, ...]
    args: Callable[[dict[str, int]], list[str]]
    ready: Callable[[dict[str, int]], bool] | None
    before: Callable[[], None] | None = None
    env: dict[str, str] | None = None


def _prune_abandoned(root: Path) -> None:
    """Remove throwaway state folders whose owner died without cleaning up (SIGKILL)."""
    for folder in root.glob("plane-*"):
        owner = folder / "owner.pid"
        try:
            pid = int(owner.read_text().strip())
        except (OSError, ValueError):
            continue
        if not pid_alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
