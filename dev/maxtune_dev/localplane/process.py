"""Child processes that cannot outlive their owner, and free loopback ports.

Every component runs in its own process group (so a stop reaches anything it
forks) with PR_SET_PDEATHSIG=SIGKILL, so that even a SIGKILL of the Python
process (an interrupted CI job, a killed pytest) takes the plane down with it.
The death signal is tied to the *thread* that forked the child, so all
children are forked from one daemon thread that lives as long as the process.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import queue
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from maxtune_dev.localplane.build import tail

_PR_SET_PDEATHSIG = 1
# Linux hands out ephemeral (outgoing) ports from 32768 up; picking below that
# keeps a client connection from grabbing a port between our pick and the bind.
PORT_RANGE = (20000, 32000)


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


_SpawnRequest = tuple[Callable[[], subprocess.Popen[bytes]], Future[subprocess.Popen[bytes]]]
_requests: queue.SimpleQueue[_SpawnRequest] = queue.SimpleQueue()
_spawner_lock = threading.Lock()
_spawner: threading.Thread | None = None


def _spawn_loop() -> None:
    while True:
        start, future = _requests.get()
        try:
            future.set_result(start())
        except BaseException as exc:
            future.set_exception(exc)


def _on_spawner_thread(start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    global _spawner  # noqa: PLW0603 - one process-wide spawner thread by design
    with _spawner_lock:
        if _spawner is None or not _spawner.is_alive():
            _spawner = threading.Thread(target=_spawn_loop, name="localplane-spawner", daemon=True)
            _spawner.start()
    future: Future[subprocess.Popen[bytes]] = Future()
    _requests.put((start, future))
    return future.result()


@dataclass
class Proc:
    """One running component: its process, its log and how to ask whether it is alive."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    log_offset: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log, lines)

    def own_output(self) -> str:
        """What this process wrote (the log is shared with earlier attempts)."""
        try:
            with self.log.open("rb") as handle:
                handle.seek(self.log_offset)
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""


def spawn(name: str, args: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> Proc:
    """Start `args` with its output appended to `log`, tied to this process's life."""
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = log.open("ab")
    handle.write(f"\n==> {' '.join(args)}\n".encode())
    handle.flush()
    offset = handle.tell()
    parent = os.getpid()

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            preexec_fn=_die_with_parent(parent),  # noqa: PLW1509 - the point of this module
        )

    try:
        popen = _on_spawner_thread(start)
    finally:
        handle.close()
    return Proc(name, popen, log, offset)


def stop(procs: Sequence[Proc], grace_s: float = 10.0) -> None:
    """SIGTERM every process group, wait up to `grace_s`, then SIGKILL what is left."""
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        remaining = max(0.0, deadline - time.monotonic())
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=remaining)
    for proc in procs:
        _signal_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=5)


def _signal_group(proc: Proc, sig: signal.Signals) -> None:
    # The group id is the child's pid (start_new_session); signal the group even
    # when the leader is gone, in case it left children behind.
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        if proc.alive():
            proc.popen.send_signal(sig)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (callers retry if a race takes it)."""
    low, high = PORT_RANGE
    for _ in range(200):
        port = random.randint(low, high)
        if port_is_free(port, host):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive for our purposes
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True
