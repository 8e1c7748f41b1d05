"""A tunnel from a port on 127.0.0.1 to host:port as seen from an SSH host (``ssh -L``).

Each client connection gets its own ``direct-tcpip`` channel
(``Transport.open_channel``). The transport is asked for on every new client: after the
SSH connection was cut, the next client's channel opens over a new connection, so a
tunnel outlives a reconnect (the DB connections of a recovery, tests/test_net_faults.py).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from typing import Callable

import paramiko


class Forwarder:
    """A tiny `ssh -L 127.0.0.1:0:host:port`: one accept thread, one pump thread per client."""

    def __init__(self, transport: Callable[..., paramiko.Transport], host: str, port: int):
        self._t = transport  # the target's live transport (reconnects after a drop)
        self._dest = (host, port)
        self._srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(16)
        self.port = self._srv.getsockname()[1]
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, paramiko.Channel]] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name=f"ssh-fwd-{self.port}", daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                r, _, _ = select.select([self._srv], [], [], 0.2)
                if not r:
                    continue
                sock, peer = self._srv.accept()
            except OSError:
                return
            ch = None
            t = None
            for _ in range(2):  # a dead transport: once more over a new SSH connection
                try:
                    t = self._t(t)
                    ch = t.open_channel("direct-tcpip", self._dest, peer, timeout=10)
                    break
                except Exception:
                    if t is not None and t.is_active():
                        break  # the host refused this destination: no point reconnecting
            if ch is None:
                sock.close()  # the client sees a closed connection (like ssh -L when the target refuses)
                continue
            with self._lock:
                self._pairs.append((sock, ch))
            th = threading.Thread(target=self._pump, args=(sock, ch), daemon=True)
            th.start()
            self._threads.append(th)

    def _pump(self, sock: socket.socket, ch: paramiko.Channel) -> None:
        try:
            while not self._closing.is_set():
                r, _, _ = select.select([sock, ch], [], [], 0.2)
                if sock in r:
                    data = sock.recv(65536)
                    if not data:
                        break
                    ch.sendall(data)
                if ch in r:
                    data = ch.recv(65536)
                    if not data:
                        break
                    sock.sendall(data)
        except Exception:
            pass
        finally:
            with contextlib.suppress(Exception):
                ch.close()
            with contextlib.suppress(Exception):
                sock.close()

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(Exception):
            self._srv.close()
        self._acceptor.join(2)
        with self._lock:
            pairs = list(self._pairs)
        for sock, ch in pairs:
            with contextlib.suppress(Exception):
                ch.close()
            with contextlib.suppress(Exception):
                sock.close()
        for th in self._threads:
            th.join(2)
