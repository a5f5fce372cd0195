"""The front door's API locations in front of a small echo server on loopback (it answers every
request with the headers it got): the per-address feedback limit, the X-Real-IP the ingress
counts clients by, and nginx's own refusals in the API's JSON shape."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.nginx import frontdoor

FEEDBACK_BURST = 40  # nginx/twotower.conf.template, zone twotower_feedback


class Echo(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:  # keep the test output quiet
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def door():
    echo = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=echo.serve_forever, daemon=True)
    thread.start()
    try:
        with frontdoor.workdir() as root:
            secrets = frontdoor.make_secrets(root, "operator", "a long test password")
            https_port, nowhere = free_port(), f"127.0.0.1:{free_port()}"
            main = frontdoor.write_config(
                root,
                http_port=free_port(),
                https_port=https_port,
                ui=nowhere,
                api=f"127.0.0.1:{echo.server_port}",
                dashboard=nowhere,
                secrets=secrets,
                rate="1000r/s",  # the general API limit out of the way
                burst=1000,
            )
            with frontdoor.running(main, https_port):
                yield f"https://127.0.0.1:{https_port}"
    finally:
        echo.shutdown()


def test_the_api_gets_the_client_address_and_a_forged_one_is_replaced(door):
    with httpx.Client(base_url=door, verify=False) as client:
        seen = client.get("/api/healthz", headers={"x-real-ip": "203.0.113.9"}).json()
    assert seen["x-real-ip"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "https"


def test_feedback_is_limited_per_address_and_searches_are_not(door):
    event = {"search_id": "0b6f3c1e-5d0a-4f5e-9a43-2f7d8c9e1a20", "doc_id": "1", "kind": "click"}
    with httpx.Client(base_url=door, verify=False) as client:
        searches = [client.post("/api/search", json={"query": "flu"}) for _ in range(60)]
        feedback = [client.post("/api/feedback", json=event) for _ in range(2 * FEEDBACK_BURST)]
    assert {r.status_code for r in searches} == {200}
    codes = [r.status_code for r in feedback]
    assert codes[:FEEDBACK_BURST] == [200] * FEEDBACK_BURST and 429 in codes, codes
    refused = next(r for r in feedback if r.status_code == 429)
    assert refused.json()["detail"].startswith("too many requests from this address")
    passed = next(r for r in feedback if r.status_code == 200).json()
    assert passed["x-real-ip"] == "127.0.0.1"  # the feedback location forwards it too


def test_a_body_over_the_limit_gets_the_api_s_json_413(door):
    with httpx.Client(base_url=door, verify=False) as client:
        response = client.post("/api/feedback", content=b"x" * (128 * 1024))
    assert response.status_code == 413
    assert response.json() == {"detail": "the request body is larger than 64 KiB, the limit"}
