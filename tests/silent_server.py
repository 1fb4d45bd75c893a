"""A server on 127.0.0.1 that accepts every connection and never answers: what a hung endpoint, or a proxy that
lost its upstream, looks like to a client. Bounded: it stops when its ``with`` block ends, and never lives longer
than ``lifetime`` seconds."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class SilentServer:
    url: str
    accepted: list[socket.socket] = field(default_factory=list)

    def wait_for_connections(self, count: int, within: float = 20.0) -> bool:
        """Whether ``count`` connections were taken within ``within`` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if len(self.accepted) >= count:
                return True
            time.sleep(0.05)
        return False


@contextmanager
def silent_server(lifetime: float = 120.0) -> Iterator[SilentServer]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    server = SilentServer(f"http://127.0.0.1:{listener.getsockname()[1]}")
    stop = threading.Event()
    deadline = time.monotonic() + lifetime

    def accept() -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server.accepted.append(connection)  # held open, never read from, never written to

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=2)
        for connection in server.accepted:
            connection.close()
        listener.close()
