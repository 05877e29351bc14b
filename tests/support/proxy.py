"""A TCP proxy on loopback that a test can switch between passing, black-holing and refusing.

Black-hole: connections stay open but no byte passes either way, as on a mobile link that
died without a FIN. Refuse: existing connections are cut and the port stops listening, so a
connect fails with "connection refused", as when the county's broker is down.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class Proxy:
    PASS, BLACKHOLE, REFUSE = "pass", "blackhole", "refuse"

    def __init__(self, target_port: int, mode: str = PASS) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.mode = self.PASS
        self._lock = threading.Lock()
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="test-proxy", daemon=True)
        self._thread.start()
        self.set_mode(mode)

    def set_mode(self, mode: str) -> None:
        with self._lock:
            if mode == self.REFUSE and self.mode != self.REFUSE:
                for sock in list(self._pairs):
                    self._close(sock)
                self._sel.unregister(self._listener)
                self._listener.close()
            elif mode != self.REFUSE and self.mode == self.REFUSE:
                self._listener = socket.create_server(("127.0.0.1", self.port))
                self._sel.register(self._listener, selectors.EVENT_READ)
            self.mode = mode

    def _close(self, sock: socket.socket) -> None:
        peer = self._pairs.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._pairs.pop(s, None)
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(s)
            s.close()

    def _run(self) -> None:
        while not self._stop:
            for key, _ in self._sel.select(timeout=0.1):
                sock = key.fileobj
                with self._lock:
                    if sock is self._listener:
                        self._accept()
                    elif sock in self._pairs:
                        self._forward(sock)  # type: ignore[arg-type]

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
        except OSError:
            client.close()
            return
        self._pairs[client] = upstream
        self._pairs[upstream] = client
        self._sel.register(client, selectors.EVENT_READ)
        self._sel.register(upstream, selectors.EVENT_READ)
        self._opened(client, upstream)

    def _opened(self, client: socket.socket, upstream: socket.socket) -> None:
        """A connection was made; a subclass that reads the traffic starts its bookkeeping."""

    def _passing(self, sock: socket.socket, data: bytes) -> None:
        """`data` read from `sock` is about to be passed on; a subclass may read it."""

    def _read(self, sock: socket.socket) -> bytes:
        """What `sock` has for us; at its end (or an error) the pair is closed and this is empty."""
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._close(sock)
        return data

    def _forward(self, sock: socket.socket) -> None:
        data = self._read(sock)
        if not data:
            return
        if self.mode == self.BLACKHOLE:
            return  # the bytes vanish, as on a link that died without a FIN
        self._passing(sock, data)
        try:
            self._pairs[sock].sendall(data)
        except OSError:
            self._close(sock)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        with self._lock:
            for sock in list(self._pairs):
                self._close(sock)
            if self.mode != self.REFUSE:
                self._listener.close()
