"""A TCP relay in front of a real tracking server that can be cut off and restored, for outage tests.

Stopping and restarting a real ``mlflow server`` to test an outage costs seconds at every start (it
imports MLflow, opens its store, starts its workers). The relay gives the client the same view of
an outage in milliseconds: while it is down nothing listens on its port (a new connection is
refused, as by a stopped server) and the connections that were open are closed (as a stopping
server closes them); :meth:`OutageRelay.up` listens on the same port again. The server behind it
keeps running, so what the client wrote before the outage is still there after it.

Example::

    with GreenServer(tmp_path) as server, OutageRelay(server.url) as relay:
        client = MlflowClient(relay.url)
        relay.down()          # connection refused, open connections cut
        ...
        relay.up()            # the same URL answers again
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from urllib.parse import urlparse

from mlflow_green.errors import GreenError

_CHUNK_BYTES = 65536


class OutageRelay:
    """Relays TCP connections from a local port to ``upstream``; :meth:`down` and :meth:`up` cut and restore it.

    Args:
        upstream: The real server's base URL, e.g. ``http://127.0.0.1:5000``.

    Example:
        >>> relay = OutageRelay("http://127.0.0.1:5000")
        >>> relay.url.startswith("http://127.0.0.1:"), relay.is_up
        (True, False)
    """

    def __init__(self, upstream: str) -> None:
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        with socket.socket() as probe:  # a free port, kept for every up()
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])

    @property
    def url(self) -> str:
        """The relay's base URL (the same across outages)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_up(self) -> bool:
        """True while the relay listens."""
        return self._listener is not None

    def up(self) -> OutageRelay:
        """Listen (again) on the relay's port; new connections reach the server."""
        with self._lock:
            if self._listener is not None:
                return self
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind(("127.0.0.1", self.port))
            except OSError as exc:
                listener.close()
                raise GreenError(f"OutageRelay cannot listen on port {self.port} again: {exc}") from exc
            listener.listen(64)
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="outage-relay", daemon=True).start()
        return self

    def down(self) -> None:
        """An outage: stop listening (new connections are refused) and cut every open connection."""
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._open = self._open, set()
        if listener is not None:
            _close(listener)
        for connection in connections:
            _close(connection)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # down(): the listener is closed
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                _close(client)  # the server itself is not there: as if it refused
                continue
            with self._lock:
                if self._listener is not listener:  # went down meanwhile
                    _close(client)
                    _close(server)
                    continue
                self._open.update((client, server))
            threading.Thread(target=self._relay, args=(client, server), name="outage-relay-pair", daemon=True).start()

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        """Both directions of one connection; when both have ended, both sockets are closed."""
        answers = threading.Thread(target=_pump, args=(server, client), name="outage-relay-pump", daemon=True)
        answers.start()
        _pump(client, server)
        answers.join()
        _close(client)
        _close(server)
        with self._lock:
            self._open.discard(client)
            self._open.discard(server)

    def __enter__(self) -> OutageRelay:
        return self.up()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.down()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` to ``sink`` until ``source`` ends (then ``sink`` is told: no more data) or either is cut."""
    try:
        while data := source.recv(_CHUNK_BYTES):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:  # cut by down(), or by either end: the other direction ends too
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
