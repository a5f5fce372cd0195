"""One crashed replica is no outage: SIGKILL one replica of each kind on a search's path (the
ingress, the encoder, a shard) under a bounded concurrency-8 load on loopback, and count the
searches that failed while Serve replaced it (none may).

The app runs the default two replicas of each (cluster/config.py). A replica is found by its
PID in Serve's status details and killed with SIGKILL: a crash, not a graceful shutdown.
The p99 latency of the searches that ran during recovery is printed, and held to a generous
bound (2 s) on this busy 2-core machine.

Each search is sent once: a connection closed without an answer counts as a failure. The
searches a killed ingress replica held are replayed on the other one by HAProxy
(cluster/haproxy.py); encoder and shard crashes are absorbed by the ingress itself.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest

from deployments.app import APP_NAME, ENCODER, INGRESS, shard_name
from deployments.serve_control import serve_details

CLIENTS = 8
WARM_S = 3.0  # load before the kill
MAX_RECOVERY_S = 90.0  # Serve must have replaced the replica by then
AFTER_S = 2.0  # load after the replacement is running
MAX_REQUESTS = 20_000
P99_BOUND_S = 2.0
QUERIES = ["what is botulism", "symptoms of the flu", "capital of france", "how do vaccines work"]


def running_pids(deployment: str) -> list[int]:
    app = (serve_details() or {}).get("applications", {}).get(APP_NAME) or {}
    replicas = app.get("deployments", {}).get(deployment, {}).get("replicas", [])
    return [r["pid"] for r in replicas if r.get("state") == "RUNNING" and r.get("pid")]


def wait_for_replicas(deployment: str, count: int, timeout_s: float) -> float:
    """Seconds until ``deployment`` has ``count`` RUNNING replicas (TimeoutError after)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if len(running_pids(deployment)) >= count:
            return time.monotonic() - started
        time.sleep(0.2)
    raise TimeoutError(f"{deployment} did not get back to {count} running replicas")


def wait_for_replicas_gone(deployment: str, pid: int, timeout_s: float = 60.0) -> None:
    """Until Serve no longer lists the killed replica as running (it noticed the crash)."""
    deadline = time.monotonic() + timeout_s
    while pid in running_pids(deployment) and time.monotonic() < deadline:
        time.sleep(0.2)


class Load:
    """``CLIENTS`` closed-loop clients posting searches; each result is (start, seconds,
    status or error). Bounded: it stops at ``MAX_REQUESTS`` or when told."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.stop = threading.Event()
        self.results: list[tuple[float, float, int | str]] = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(CLIENTS)]

    def _run(self, offset: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            i = offset
            while not self.stop.is_set() and len(self.results) < MAX_REQUESTS:
                body = {"query": QUERIES[i % len(QUERIES)], "k": 10}
                i += 1
                started = time.monotonic()
                try:
                    outcome: int | str = client.post("/search", json=body).status_code
                except httpx.HTTPError as err:
                    outcome = f"{type(err).__name__}: {err}"
                self.results.append((started, time.monotonic() - started, outcome))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


@pytest.mark.parametrize("deployment", [ENCODER, shard_name(0), INGRESS])
def test_a_killed_replica_fails_no_search(serving, deployment):
    replicas = len(running_pids(deployment))
    assert replicas >= 2, f"{deployment} runs {replicas} replica(s); the default is two"
    with Load(serving.api_base_url) as load:
        time.sleep(WARM_S)
        victim = running_pids(deployment)[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        wait_for_replicas_gone(deployment, victim)
        wait_for_replicas(deployment, replicas, MAX_RECOVERY_S)
        recovered_s = time.monotonic() - killed_at
        time.sleep(AFTER_S)
    results = load.results
    failed = [
        (round(started - killed_at, 2), round(seconds, 2), outcome)
        for started, seconds, outcome in results
        if outcome != 200
    ]
    recovery = [s for started, s, _ in results if killed_at <= started <= killed_at + recovered_s]
    print(
        f"\n{deployment}: killed pid {victim}; replaced in {recovered_s:.1f} s; "
        f"{len(results)} searches, {len(recovery)} during recovery: "
        f"p99 {p99(recovery) * 1000:.0f} ms, max {max(recovery) * 1000:.0f} ms; "
        f"failed {len(failed)}: {failed[:5]} (started s after the kill, seconds, outcome)"
    )
    assert not failed, f"{len(failed)} searches failed: {failed[:5]}"
    assert p99(recovery) < P99_BOUND_S
