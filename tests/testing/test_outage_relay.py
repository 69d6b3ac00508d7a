"""OutageRelay: what a client sees through it is what it sees of a server that stops and starts again."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlflow_green.testing.outage import OutageRelay


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as MLflow's client uses it
    writes: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.writes.append(body)
        self._answer(body)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(str(len(self.writes)).encode())

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def upstream() -> Iterator[str]:
    _Echo.writes = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _connect(relay: OutageRelay) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", relay.port, timeout=5)


def _post(connection: http.client.HTTPConnection, body: bytes) -> bytes:
    connection.request("POST", "/write", body=body)
    return connection.getresponse().read()


def test_requests_and_answers_pass_through_whole(upstream: str) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB: many chunks each way
    with OutageRelay(upstream) as relay:
        connection = _connect(relay)
        assert _post(connection, big) == big
        assert _post(connection, b"second on the same connection") == b"second on the same connection"
        connection.close()
    assert _Echo.writes == [big, b"second on the same connection"]


def test_down_refuses_new_connections_and_cuts_open_ones_and_up_answers_again_on_the_same_port(upstream: str) -> None:
    with OutageRelay(upstream) as relay:
        port, kept = relay.port, _connect(relay)
        assert _post(kept, b"before") == b"before"

        relay.down()
        assert not relay.is_up
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            _post(kept, b"during")  # the open connection was cut, as by a stopping server
        kept.close()

        relay.up()
        assert relay.port == port and relay.is_up
        again = _connect(relay)
        again.request("GET", "/count")
        assert again.getresponse().read() == b"1", "the server behind kept what was written before the outage"
        again.close()
    assert _Echo.writes == [b"before"]


def test_a_server_that_is_not_there_closes_the_connection_at_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with OutageRelay(nobody) as relay:
        connection = _connect(relay)
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            _post(connection, b"anyone?")
        connection.close()
