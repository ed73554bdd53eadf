"""Free-port picking (no cluster needed)."""

from __future__ import annotations

import socket

from maxtune_dev.localplane.process import PORT_RANGE, free_port, port_is_free


def test_free_port_is_bindable_and_outside_the_ephemeral_range() -> None:
    port = free_port()
    assert PORT_RANGE[0] <= port <= PORT_RANGE[1]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_listening_port_is_not_free() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert not port_is_free(sock.getsockname()[1])
