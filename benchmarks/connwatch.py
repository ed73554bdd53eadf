"""Connections to one local TCP port, counted from the kernel's socket table (/proc/net/tcp).

Each new connection to a webhook is a TLS handshake (the API server's webhook
client keeps no TLS session cache, so none resumes). The count is taken
outside the server, so it holds for any server (maxtune's, the references),
without changing one: every polling pass lists the sockets whose remote end
is the port (the client's side, from connect to its TIME_WAIT, which lasts 60 s
on Linux after a close) and remembers each client port seen. Polling every
0.2 s cannot miss a connection shorter than that: it stays in TIME_WAIT on
whichever side closed first, the client's side included.
"""

from __future__ import annotations

import threading
from pathlib import Path

TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
LISTEN = "0A"


def client_ports(port: int, tables: tuple[Path, ...] = TABLES) -> set[tuple[str, int]]:
    """(local address, local port) of every client socket connected to `port` on this host."""
    wanted = f"{port:04X}"
    found: set[tuple[str, int]] = set()
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4:
                continue
            local, remote, state = fields[1], fields[2], fields[3]
            if remote.rsplit(":", 1)[1] == wanted and state != LISTEN:
                address, local_port = local.rsplit(":", 1)
                found.add((address, int(local_port, 16)))
    return found


class ConnWatch:
    """Distinct client connections to `port` between `start()` and `stop()`."""

    def __init__(self, port: int, interval_s: float = 0.2) -> None:
        self.port = port
        self.interval_s = interval_s
        self._before: set[tuple[str, int]] = set()
        self._seen: set[tuple[str, int]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ConnWatch:
        self._before = client_ports(self.port)  # already open: not new in this window
        self._seen = set()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="connwatch", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self._seen |= client_ports(self.port)
            self._stop.wait(self.interval_s)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        now = client_ports(self.port)
        self._seen |= now
        return {
            "new_connections": len(self._seen - self._before),
            "reused_from_before": len(self._seen & self._before),
            "open_at_end": len(now),
        }
