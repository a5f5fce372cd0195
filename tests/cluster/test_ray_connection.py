"""`connect` fails fast, with a clear message, when no Ray head listens where it looks, and
waits a bounded time for a head that is still starting. Everything against real loopback
sockets: a port nothing listens on refuses a connection at once, which is what a stopped
head's port does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from cluster.processes import free_port
from cluster.ray_connection import RayUnreachable, _gcs_endpoint, wait_for_head

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# In a fresh process, so that no Ray of the test session is connected already (`connect`
# would then return at once); it times the real `connect`, `ray.init` included if reached.
CONNECT = """
import json, sys, time
from cluster.config import Settings
from cluster.ray_connection import connect
settings = Settings(state_dir=sys.argv[1], host="127.0.0.1", ray_address=sys.argv[2])
started = time.monotonic()
try:
    connect(settings, quiet=True)
    outcome = {"error": None}
except Exception as err:
    outcome = {"error": type(err).__name__, "message": str(err)}
outcome["elapsed"] = time.monotonic() - started
print(json.dumps(outcome))
"""


def test_connect_to_a_closed_port_fails_within_seconds_with_a_clear_message(tmp_path):
    address = f"127.0.0.1:{free_port()}"  # free: nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "TWOTOWER_"))}
    done = subprocess.run(
        [sys.executable, "-c", CONNECT, str(tmp_path), address],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["error"] == "RayUnreachable", outcome
    assert outcome["message"] == (
        f"no Ray head accepts connections at {address} (connection refused)"
    )
    assert outcome["elapsed"] < 3.0, outcome  # ray.init alone would try for ~14 minutes


def test_the_cli_prints_it_as_one_line_naming_ray():
    from twotower.cli import explain

    err = RayUnreachable("no Ray head accepts connections at 127.0.0.1:1 (connection refused)")
    what, hint = explain(err)
    assert what.startswith("Ray (at ") and what.endswith(
        "is unreachable: no Ray head accepts connections at 127.0.0.1:1 (connection refused)"
    )
    assert "twotower up" in hint


def test_a_head_still_starting_is_waited_for_a_bounded_time():
    port = free_port()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    def open_later() -> None:  # the head's GCS port opens a second after we start trying
        time.sleep(1.0)
        listener.bind(("127.0.0.1", port))
        listener.listen()

    opener = threading.Thread(target=open_later)
    started = time.monotonic()
    opener.start()
    try:
        wait_for_head(f"127.0.0.1:{port}", wait_s=20)
        waited = time.monotonic() - started
    finally:
        opener.join()
        listener.close()
    assert 0.9 < waited < 5.0


def test_the_wait_is_bounded():
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(RayUnreachable, match=r"after waiting 1.5s \(connection refused\)"):
        wait_for_head(address, wait_s=1.5)
    assert 1.5 <= time.monotonic() - started < 4.0


def test_the_addresses_it_probes():
    assert _gcs_endpoint("127.0.0.1:6380") == ("127.0.0.1", 6380)
    assert _gcs_endpoint("ray://head.example:10001") == ("head.example", 10001)
    assert _gcs_endpoint("[::1]:6379") == ("::1", 6379)
    assert _gcs_endpoint("auto") is None and _gcs_endpoint("local") is None
