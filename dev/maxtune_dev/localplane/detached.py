"""Named planes that outlive the command that started them (`up` / `down` / `status` / `env`).

`up` starts a small supervisor process (`python -m maxtune_dev.localplane _serve`)
in its own session; the supervisor owns the LocalPlane, so the components keep
their die-with-parent guarantee: killing the supervisor, however hard, takes
the whole plane down. The folder `.run/plane/<name>/` holds the kubeconfig,
the component logs and the supervisor's pid, log and `ready.json`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maxtune_dev.localplane import paths
from maxtune_dev.localplane.build import ensure_binaries, tail
from maxtune_dev.localplane.plane import LocalPlane, PlaneError
from maxtune_dev.localplane.process import pid_alive

UP_TIMEOUT_S = 300.0
DOWN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Named:
    """The files of one named plane."""

    name: str

    @property
    def folder(self) -> Path:
        return paths.named_plane_dir(self.name)

    @property
    def pid_file(self) -> Path:
        return self.folder / "supervisor.pid"

    @property
    def ready_file(self) -> Path:
        return self.folder / "ready.json"

    @property
    def supervisor_log(self) -> Path:
        return self.folder / "supervisor.log"

    @property
    def kubeconfig(self) -> Path:
        return self.folder / "kubeconfig"

    def supervisor_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if not pid_alive(pid):
            return None
        try:  # after a reboot the pid may belong to something else entirely
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"maxtune_dev.localplane" in cmdline else None

    def info(self) -> dict[str, Any] | None:
        """ready.json of a live plane, else None."""
        if self.supervisor_pid() is None:
            return None
        try:
            data: dict[str, Any] = json.loads(self.ready_file.read_text())
        except (OSError, ValueError):
            return None
        return data


def export_line(kubeconfig: Path) -> str:
    return f"export KUBECONFIG={kubeconfig}"


def up(name: str) -> int:
    named = Named(name)
    info = named.info()
    if info is not None:
        print(f"plane {name!r} is already up at {info['server']}")
        print(f"  {export_line(named.kubeconfig)}")
        return 0
    ensure_binaries()  # in the foreground, so a first run shows the build's progress
    named.folder.mkdir(parents=True, exist_ok=True)
    named.ready_file.unlink(missing_ok=True)
    started = time.monotonic()
    with named.supervisor_log.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "maxtune_dev.localplane", "_serve", "--name", name],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    while time.monotonic() - started < UP_TIMEOUT_S:
        if proc.poll() is not None:
            print(f"plane {name!r} failed to start; supervisor log {named.supervisor_log}:")
            print(tail(named.supervisor_log, 60))
            return 1
        info = named.info()
        if info is not None:
            elapsed = time.monotonic() - started
            versions = info.get("versions", {})
            print(
                f"plane {name!r} is up in {elapsed:.1f}s at {info['server']} "
                f"(Kubernetes {versions.get('kubernetes', '?')})"
            )
            print("point kubectl and helm at it with:")
            print(f"  {export_line(named.kubeconfig)}")
            print(f"helm for it: {info.get('helm', 'see python -m maxtune_dev.localplane build')}")
            print(f"stop it with: python -m maxtune_dev.localplane down --name {name}")
            return 0
        time.sleep(0.3)
    print(f"plane {name!r} not up after {UP_TIMEOUT_S:.0f}s; see {named.supervisor_log}")
    return 1


def down(name: str) -> int:
    named = Named(name)
    pid = named.supervisor_pid()
    if pid is None:
        print(f"plane {name!r} is not running")
        named.ready_file.unlink(missing_ok=True)
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + DOWN_TIMEOUT_S
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.2)
    if pid_alive(pid):  # the components die with it (PR_SET_PDEATHSIG)
        os.killpg(pid, signal.SIGKILL)
    named.ready_file.unlink(missing_ok=True)
    named.pid_file.unlink(missing_ok=True)
    print(f"plane {name!r} stopped")
    return 0


def status(name: str) -> int:
    named = Named(name)
    info = named.info()
    if info is None:
        print(f"plane {name!r} is not running")
        return 3
    print(f"plane {name!r}: {info['server']}, started {info['started_at']}")
    print(f"  kube-apiserver /readyz: {'ok' if _readyz(named) else 'NOT READY'}")
    for component, pid in info["pids"].items():
        state = "running" if pid_alive(pid) else "EXITED"
        print(f"  {component:<24} pid {pid:<8} {state}")
    print(f"  {export_line(named.kubeconfig)}")
    return 0


def _readyz(named: Named) -> bool:
    pki = named.folder / "pki"
    info = named.info() or {}
    try:
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        url = f"{info['server']}/readyz"
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return int(response.status) == 200
    except (OSError, KeyError, ValueError):
        return False


def env(name: str) -> int:
    named = Named(name)
    if named.info() is None:
        print(f"plane {name!r} is not running; start it with `up --name {name}`", file=sys.stderr)
        return 1
    print(export_line(named.kubeconfig))
    return 0


def serve(name: str) -> int:
    """The supervisor: run the plane until SIGTERM/SIGINT or until a component dies."""
    named = Named(name)
    named.pid_file.write_text(f"{os.getpid()}\n")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    plane = LocalPlane(named.folder)
    try:
        plane.start()
    except PlaneError as exc:
        print(f"start failed: {exc}", flush=True)
        return 1
    info = {
        "pid": os.getpid(),
        "server": plane.server,
        "kubeconfig": str(plane.kubeconfig),
        "ports": plane.ports,
        "pids": plane.pids(),
        "versions": dict(plane.binaries.versions),
        "helm": str(plane.binaries.helm),
        "timings": plane.timings,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    named.ready_file.write_text(json.dumps(info, indent=2) + "\n")
    print(f"up: {plane.server} in {plane.timings['ready_s']:.1f}s", flush=True)
    code = 0
    while not stopping.wait(1.0):
        if not plane.running():
            print(f"a component exited; stopping:\n{plane.format_log_tails()}", flush=True)
            code = 1
            break
    named.ready_file.unlink(missing_ok=True)
    plane.stop()
    named.pid_file.unlink(missing_ok=True)
    print("stopped", flush=True)
    return code
