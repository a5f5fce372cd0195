"""`twotower chaos`: the fault campaign against the running local stack, counting lost records.

For each scenario, a bounded search + feedback load runs through the API on loopback, the
fault is injected and repaired under it, and then PostgreSQL is read until every
acknowledged record is there or a flush deadline passes. One row per scenario:

    scenario | searches sent | feedback sent | failed | acknowledged records
             | records in PostgreSQL | lost

Acknowledged = searches answered 200 (by their search_id) and clicks answered 200 (the API
makes the click's event id, so a click is found by its search: each search is clicked at
most once). Failed = requests not answered 200: a fault may cost answers. Lost = acknowledged
and still not in PostgreSQL at the deadline: the log store's promise broken.

Scenarios: a PostgreSQL outage and an S3 (SeaweedFS) outage, each server stopped and started
again through its server class (cluster/servers.py: by the PIDs it started), and only if
`twotower up` started it; and a SIGKILL of one replica of each kind on a search's path
(QueryEncoder, IndexShard, SearchIngress: PIDs from Serve's status), waiting until Serve has
replaced it.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import psycopg

from cluster.config import Settings
from cluster.processes import http_ok
from cluster.ray_connection import connect
from deployments.app import APP_NAME, ENCODER, INGRESS, shard_name
from deployments.serve_control import serve_details
from twotower.stack import StackState, services

QUERIES = ["what is botulism", "symptoms of the flu", "capital of france", "how do vaccines work"]
SCENARIOS = ("postgresql", "encoder", "shard", "ingress", "s3")


class ChaosError(RuntimeError):
    """The campaign cannot run here (no API answering, an unknown scenario)."""


@dataclass(frozen=True)
class Plan:
    """Every bound of one scenario: load, fault and waits."""

    clients: int = 4  # closed-loop search clients
    warm_s: float = 3.0  # load before the fault
    outage_s: float = 5.0  # how long a stopped server stays down
    after_s: float = 3.0  # load after the repair
    max_searches: int = 5_000
    click_rate: float = 5.0  # clicks a second: under the API's per-client feedback limit
    click_delay_s: float = 0.3  # a click follows its search by at least this
    recover_s: float = 90.0  # for Serve to replace a killed replica
    flush_s: float = 60.0  # for acknowledged records to reach PostgreSQL


@dataclass
class Fault:
    name: str
    inject: Callable[[], None]
    repair: Callable[[], None]  # returns once the fault is over
    skip: str = ""  # why it cannot run here


@dataclass
class Row:
    scenario: str
    searches: int = 0
    feedback: int = 0
    failed: int = 0
    acknowledged: int = 0
    stored: int = 0
    during_fault: int = 0  # searches answered 200 while the fault lasted
    note: str = ""

    @property
    def lost(self) -> int:
        return self.acknowledged - self.stored


# --------------------------------------------------------------------------- load
class Load:
    """Search clients and one clicker, bounded by `plan.max_searches` and by `stop`."""

    def __init__(self, base_url: str, plan: Plan, tag: str) -> None:
        self.base_url, self.plan, self.tag = base_url, plan, tag
        self.searches = self.feedback = self.failed = self.failed_clicks = 0
        self.acked_searches: list[str] = []
        self.acked_clicks: list[str] = []  # search_ids whose click was acknowledged
        self.acked_in_fault = 0  # searches answered 200 between the fault and its repair
        self.in_fault = threading.Event()
        self._to_click: queue.Queue[tuple[float, str, int]] = queue.Queue(maxsize=100)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._searcher) for _ in range(plan.clients)]
        self._threads.append(threading.Thread(target=self._clicker))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _searcher(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            while not self._stop.is_set():
                with self._lock:
                    if self.searches >= self.plan.max_searches:
                        return
                    n, self.searches = self.searches, self.searches + 1
                body = {"query": QUERIES[n % len(QUERIES)], "k": 5, "session_id": f"{self.tag}-{n}"}
                answer = _post(client, "/search", body)
                with self._lock:
                    if answer is None:
                        self.failed += 1
                        continue
                    self.acked_searches.append(answer["search_id"])
                    self.acked_in_fault += self.in_fault.is_set()
                if answer["results"]:
                    doc_id = answer["results"][0]["doc_id"]
                    try:
                        self._to_click.put_nowait((time.monotonic(), answer["search_id"], doc_id))
                    except queue.Full:
                        pass  # more searches than clicks: those stay unclicked

    def _clicker(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            while not self._stop.wait(1 / self.plan.click_rate):
                try:
                    searched_at, search_id, doc_id = self._to_click.get_nowait()
                except queue.Empty:
                    continue
                time.sleep(max(0.0, searched_at + self.plan.click_delay_s - time.monotonic()))
                body = {"search_id": search_id, "doc_id": doc_id, "kind": "click"}
                answer = _post(client, "/feedback", body)
                with self._lock:
                    self.feedback += 1
                    if answer is None:
                        self.failed += 1
                        self.failed_clicks += 1
                    else:
                        self.acked_clicks.append(search_id)


def _post(client: httpx.Client, path: str, body: dict) -> dict | None:
    """The JSON of a 200 answer, else None. Sent once: HAProxy itself replays a request
    whose ingress replica died holding it (cluster/haproxy.py), so a client never has to."""
    try:
        response = client.post(path, json=body)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


# --------------------------------------------------------------------------- counting
def count_stored(settings: Settings, searches: list[str], clicks: list[str]) -> int:
    """How many of the acknowledged searches and clicks PostgreSQL holds."""
    with psycopg.connect(settings.dsn, connect_timeout=5) as conn:
        found = conn.execute(
            "SELECT count(*) FROM searches WHERE id = ANY(%s::uuid[])", (searches,)
        ).fetchone()[0]
        found += conn.execute(
            "SELECT count(DISTINCT search_id) FROM feedback WHERE search_id = ANY(%s::uuid[])",
            (clicks,),
        ).fetchone()[0]
    return found


def wait_stored(
    settings: Settings, searches: list[str], clicks: list[str], timeout_s: float
) -> int:
    """Read until every acknowledged record is in PostgreSQL or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    stored = 0
    while True:
        try:
            stored = count_stored(settings, searches, clicks)
        except psycopg.OperationalError:
            pass  # just restarted: not answering yet
        if stored == len(searches) + len(clicks) or time.monotonic() >= deadline:
            return stored
        time.sleep(1.0)


# --------------------------------------------------------------------------- faults
def server_outage(name: str, server, plan: Plan, restarted: Callable | None = None) -> Fault:
    """Stop `server` (a cluster/servers.py class), start it again `plan.outage_s` later."""

    def repair() -> None:
        time.sleep(plan.outage_s)
        ref = server.start()
        if restarted is not None:
            restarted(ref)

    return Fault(name, server.stop, repair)


def running_pids(deployment: str) -> list[int]:
    app = (serve_details() or {}).get("applications", {}).get(APP_NAME) or {}
    replicas = app.get("deployments", {}).get(deployment, {}).get("replicas", [])
    return [r["pid"] for r in replicas if r.get("state") == "RUNNING" and r.get("pid")]


def replica_kill(deployment: str, plan: Plan) -> Fault:
    """SIGKILL one running replica of `deployment`; over once Serve runs as many as before."""
    killed: dict[str, int] = {}

    def inject() -> None:
        pids = running_pids(deployment)
        if not pids:
            raise RuntimeError(f"{deployment} has no running replica to kill")
        killed.update(pid=pids[0], replicas=len(pids))
        os.kill(pids[0], signal.SIGKILL)

    def repair() -> None:
        deadline = time.monotonic() + plan.recover_s
        while time.monotonic() < deadline:
            pids = running_pids(deployment)
            if killed["pid"] not in pids and len(pids) >= killed["replicas"]:
                return
            time.sleep(0.25)
        raise TimeoutError(f"Serve did not replace the killed {deployment} replica in time")

    return Fault(f"SIGKILL {deployment}", inject, repair)


def stack_faults(settings: Settings, plan: Plan, only: list[str] | None = None) -> list[Fault]:
    """The campaign against the stack `twotower up` runs with `settings`."""
    state = StackState(settings.state_dir)
    stack = {svc.name: svc for svc in services(settings)}
    faults = {
        "postgresql": _outage(stack["postgresql"], "PostgreSQL outage", plan, state),
        "encoder": replica_kill(ENCODER, plan),
        "shard": replica_kill(shard_name(0), plan),
        "ingress": replica_kill(INGRESS, plan),
        "s3": _outage(stack["s3"], "S3 outage", plan, state),
    }
    return [faults[name] for name in (only or SCENARIOS)]


def _outage(svc, name: str, plan: Plan, state: StackState) -> Fault:
    if svc.external or svc.name not in state.started:
        why = "external" if svc.external else "not started by `twotower up`"
        return Fault(
            name, lambda: None, lambda: None, skip=f"{svc.name} is {why}: not ours to stop"
        )
    return server_outage(
        name, svc.server, plan, lambda ref: state.record(svc.name, svc.address, [ref])
    )


# --------------------------------------------------------------------------- the campaign
def run(settings: Settings, fault: Fault, plan: Plan) -> Row:
    """One scenario: load, the fault under it, then the count."""
    if fault.skip:
        return Row(fault.name, note=fault.skip)
    tag = f"chaos-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    with Load(settings.api_base_url, plan, tag) as load:
        time.sleep(plan.warm_s)
        load.in_fault.set()
        fault.inject()
        fault.repair()
        load.in_fault.clear()
        time.sleep(plan.after_s)
    stored = wait_stored(settings, load.acked_searches, load.acked_clicks, plan.flush_s)
    return Row(
        fault.name,
        searches=load.searches,
        feedback=load.feedback,
        failed=load.failed,
        acknowledged=len(load.acked_searches) + len(load.acked_clicks),
        stored=stored,
        during_fault=load.acked_in_fault,
        note=f"{load.acked_in_fault} searches answered during the fault;"
        f" {load.failed_clicks} of the failures clicks; {time.monotonic() - started:.0f} s",
    )


def table(rows: list[Row]) -> str:
    lines = [
        "| scenario | searches sent | feedback sent | failed | acknowledged records"
        " | records in PostgreSQL | lost | note |",
        "|---" * 8 + "|",
    ]
    for r in rows:
        lines.append(f"| {r.scenario} | {r.searches} | {r.feedback} | {r.failed} | "
                     f"{r.acknowledged} | {r.stored} | {r.lost} | {r.note} |")  # fmt: skip
    return "\n".join(lines)


def main(settings: Settings, only: list[str] | None, plan: Plan, echo=print) -> int:
    """Run the campaign, print the table; 1 if any acknowledged record was lost."""
    unknown = sorted(set(only or ()) - set(SCENARIOS))
    if unknown:
        raise ChaosError(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    if not http_ok(f"{settings.api_base_url}/healthz", timeout=5):
        raise ChaosError(f"the search API at {settings.api_base_url} does not answer")
    connect(settings, quiet=True)
    rows = []
    for fault in stack_faults(settings, plan, only):
        echo(f"chaos: {fault.name}")
        rows.append(run(settings, fault, plan))
    echo(table(rows))
    return 1 if any(r.lost for r in rows) else 0
