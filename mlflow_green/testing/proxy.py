"""An HTTP proxy in front of a real tracking server that fails on command, for fault tests.

It forwards every request to the real server, except those a rule catches: answer a status
(503, 429, 400... with an MLflow-style JSON error), or forward the request and then drop the
connection without answering (the server did the work; the client never hears of it), or
forward it twice and answer the second (a client or gateway that resent a request whose answer
was lost: MLflow's HTTP client did so for every ``POST`` before MLflow 3.18), or hold the request
without ever answering (a black hole, until the client times out).

Example::

    with GreenServer(tmp_path) as server, FaultyProxy(server.url) as proxy:
        proxy.fail("runs/log-batch", status=503, times=2)     # the next two writes get a 503
        proxy.drop_answer("runs/create")                       # the next run is created, the answer lost
        proxy.resend("runs/create")                            # the next run is created twice
        client = MlflowClient(proxy.url)
        ...
        proxy.count("runs/create")                             # requests answered or forwarded
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlparse

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te", "upgrade"}


@dataclass
class _Rule:
    path_contains: str
    action: str  # "status" | "drop" | "resend" | "hold"
    times: int
    status: int = 0
    body: bytes = b""


class FaultyProxy:
    """A proxy on a free local port forwarding to ``upstream`` (see the module docstring).

    Args:
        upstream: The real server's base URL, e.g. ``http://127.0.0.1:5000``.
    """

    def __init__(self, upstream: str) -> None:
        parsed = urlparse(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.seen: list[tuple[str, str, str]] = []
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- rules ---------------------------------------------------------------------------------
    def fail(self, path_contains: str, *, status: int, times: int = 1, error_code: str | None = None, message: str = "injected") -> None:
        """Answer the next ``times`` matching requests with ``status`` and an MLflow-style error body."""
        code = error_code or {400: "INVALID_PARAMETER_VALUE", 429: "REQUEST_LIMIT_EXCEEDED"}.get(status, "TEMPORARILY_UNAVAILABLE")
        body = json.dumps({"error_code": code, "message": message}).encode()
        self._add(_Rule(path_contains, "status", times, status, body))

    def drop_answer(self, path_contains: str, *, times: int = 1) -> None:
        """Forward the next ``times`` matching requests, then close the connection without answering."""
        self._add(_Rule(path_contains, "drop", times))

    def resend(self, path_contains: str, *, times: int = 1) -> None:
        """Forward the next ``times`` matching requests twice and answer with the second answer.

        The server does the work twice, as when a client or a gateway resends a request whose answer
        was lost.
        """
        self._add(_Rule(path_contains, "resend", times))

    def hold(self, path_contains: str = "", *, times: int = 1_000_000) -> None:
        """Never answer matching requests (until :meth:`clear`): the client waits for its own timeout."""
        self._release.clear()
        self._add(_Rule(path_contains, "hold", times))

    def clear(self) -> None:
        """Remove every rule and let held requests go (unanswered)."""
        with self._lock:
            self._rules.clear()
        self._release.set()

    def count(self, path_contains: str, outcome: str | None = None) -> int:
        """Requests answered or forwarded whose path contains ``path_contains`` (and that ended with ``outcome``); a
        request :meth:`resend` forwarded twice counts twice."""
        with self._lock:
            return sum(1 for _, path, how in self.seen if path_contains in path and (outcome is None or how == outcome))

    def _add(self, rule: _Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    def _take(self, path: str) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.path_contains in path and rule.times > 0:
                    rule.times -= 1
                    return rule
        return None

    # -- serving -------------------------------------------------------------------------------
    def start(self) -> FaultyProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, name="faulty-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
                pass

            def _body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                body = self._body()
                rule = proxy._take(self.path)
                if rule is not None and rule.action == "hold":
                    proxy._log(self.command, self.path, "held")
                    proxy._release.wait()
                    self._drop()
                    return
                if rule is not None and rule.action == "status":
                    proxy._log(self.command, self.path, f"status {rule.status}")
                    self._answer(rule.status, {"Content-Type": "application/json"}, rule.body)
                    return
                status, headers, answer = self._forward(body)
                if rule is not None and rule.action == "resend":
                    proxy._log(self.command, self.path, f"forwarded {status}, answer lost")
                    status, headers, answer = self._forward(body)
                if rule is not None and rule.action == "drop":
                    proxy._log(self.command, self.path, "dropped")
                    self._drop()
                    return
                proxy._log(self.command, self.path, f"forwarded {status}")
                self._answer(status, headers, answer)

            def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
                connection = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                    connection.request(self.command, self.path, body=body or None, headers=headers)
                    response = connection.getresponse()
                    answer = response.read()
                    kept = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
                    return response.status, kept, answer
                finally:
                    connection.close()

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _drop(self) -> None:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

        return Handler

    def _log(self, method: str, path: str, outcome: str) -> None:
        with self._lock:
            self.seen.append((method, path, outcome))


__all__ = ["FaultyProxy"]
