"""The website's client sends a search (or a GET) once more when its connection breaks without
an answer, as when the replica serving it dies mid-request, and never a feedback or a refused
request.

The failures are real: a small HTTP server on a loopback socket reads each request in full and
then, as scripted per connection, closes the connection without answering (a clean close: the
client sees an empty response), resets it (SO_LINGER 0: the client sees "connection reset by
peer"), or answers. No mock stands in for httpx or the network.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from ui.client import BackendError, BackendUnavailable, SearchApi


class ScriptedServer:
    """One action per accepted connection, in order: "close", "reset", "ok" or "refuse"."""

    def __init__(self, actions: list[str]) -> None:
        self.actions = list(actions)
        self.requests: list[tuple[str, bytes]] = []  # (request line, body)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(10)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for action in self.actions:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed, or nobody came
                return
            with conn:
                conn.settimeout(10)
                self.requests.append(self._read(conn))
                if action == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif action in ("ok", "refuse"):
                    status, body = (
                        ("200 OK", {"results": [], "echo": "ok"})
                        if action == "ok"
                        else ("400 Bad Request", {"detail": "k must be an integer"})
                    )
                    payload = json.dumps(body).encode()
                    conn.sendall(
                        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                        + payload
                    )
                # "close": the connection is closed unanswered when the with block ends

    @staticmethod
    def _read(conn: socket.socket) -> tuple[str, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            (
                int(line.split(":", 1)[1])
                for line in lines
                if line.lower().startswith("content-length:")
            ),
            0,
        )
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return lines[0], body

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a pending accept (Linux)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=10)


@pytest.fixture
def server(request) -> Iterator[ScriptedServer]:
    scripted = ScriptedServer(request.param)
    yield scripted
    scripted.close()


@pytest.mark.parametrize("server", [["close", "ok"], ["reset", "ok"]], indirect=True)
def test_a_search_whose_connection_breaks_unanswered_is_sent_once_more(server):
    api = SearchApi(server.url, timeout=10)
    assert api.search("what is a two-tower model", k=5) == {"results": [], "echo": "ok"}
    assert [line for line, _ in server.requests] == ["POST /search HTTP/1.1"] * 2
    first, second = (json.loads(body) for _, body in server.requests)
    assert first == second == {"query": "what is a two-tower model", "k": 5}


@pytest.mark.parametrize("server", [["close", "close", "ok"]], indirect=True)
def test_only_once(server):
    api = SearchApi(server.url, timeout=10)
    with pytest.raises(BackendUnavailable, match="cannot be reached"):
        api.health()
    assert [line for line, _ in server.requests] == ["GET /healthz HTTP/1.1"] * 2


@pytest.mark.parametrize("server", [["close", "ok"]], indirect=True)
def test_a_feedback_is_never_sent_twice(server):
    api = SearchApi(server.url, timeout=10)
    with pytest.raises(BackendUnavailable, match="cannot be reached"):
        api.feedback("search-1", "doc-1", "click")
    assert [line for line, _ in server.requests] == ["POST /feedback HTTP/1.1"]


@pytest.mark.parametrize("server", [["refuse", "ok"]], indirect=True)
def test_a_refused_search_is_not_retried(server):
    api = SearchApi(server.url, timeout=10)
    with pytest.raises(BackendError, match="k must be an integer"):
        api.search("q")
    assert len(server.requests) == 1
