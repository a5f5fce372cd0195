"""The document benchmark (`twotower bench --documents`), against the running stack on loopback.

1. Upsert-to-searchable: one document at a time, the time from sending its PUT to the first
   search (hybrid, by a word only it holds) that returns it.
2. Writes while searching: closed-loop search at concurrency 8 (a child process at nice 19, as
   `twotower bench` measures) for a fixed time without writes, then again while a writer sends
   batches at a target rate; search p99 side by side, and the write rate reached.

Every document it writes has an id starting ``bench-`` and is deleted again at the end.
"""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import numpy as np

from cluster.api_tokens import write_token
from cluster.config import Settings
from monitoring.bench import Level, served_level

BATCH = 10  # documents a PUT while searching


@dataclass
class WriteLoad:
    target_per_s: float
    written: int = 0
    errors: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.written / self.seconds if self.seconds else 0.0


def _doc(prefix: str) -> tuple[str, str, dict]:
    word = "zq" + secrets.token_hex(5)
    doc_id = f"bench-{prefix}-{word}"
    return doc_id, word, {"id": doc_id, "text": f"{word} a benchmark document about nothing"}


def upsert_to_searchable(client: httpx.Client, auth: dict, count: int, ids: list[str]) -> list:
    """Seconds from each PUT to the first search that finds its document."""
    seconds = []
    for _ in range(count):
        doc_id, word, doc = _doc("latency")
        started = time.perf_counter()
        client.put("/documents", json={"documents": [doc]}, headers=auth).raise_for_status()
        ids.append(doc_id)
        while time.perf_counter() - started < 30:
            body = client.post("/search", json={"query": word, "k": 5, "mode": "hybrid"}).json()
            if any(r["doc_id"] == doc_id for r in body["results"]):
                seconds.append(time.perf_counter() - started)
                break
            time.sleep(0.02)
    return seconds


def _write_stream(base_url: str, auth: dict, load: WriteLoad, stop: threading.Event, ids: list):
    interval = BATCH / load.target_per_s
    started = time.perf_counter()
    with httpx.Client(base_url=base_url, timeout=30) as client:
        due = started
        while not stop.is_set():
            docs = [_doc("load") for _ in range(BATCH)]
            answer = client.put("/documents", json={"documents": [d for _, _, d in docs]},
                                headers=auth)  # fmt: skip
            if answer.status_code == 200:
                load.written += BATCH
                ids.extend(doc_id for doc_id, _, _ in docs)
            else:
                load.errors += 1
            due += interval
            time.sleep(max(0.0, due - time.perf_counter()))
    load.seconds = time.perf_counter() - started


def searching_with_writes(
    settings: Settings, auth: dict, seconds: float, per_s: float, ids: list[str]
) -> tuple[Level, Level, WriteLoad]:
    """(search without writes, search with writes, the writes), one after the other."""
    base = settings.api_base_url
    quiet = served_level(base, 8, 10**6, seconds)
    load, stop = WriteLoad(per_s), threading.Event()
    writer = threading.Thread(target=_write_stream, args=(base, auth, load, stop, ids))
    writer.start()
    try:
        busy = served_level(base, 8, 10**6, seconds)
    finally:
        stop.set()
        writer.join()
    return quiet, busy, load


def clean_up(base_url: str, auth: dict, ids: list[str]) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client, ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda d: client.delete(f"/documents/{d}", headers=auth), ids))


def main(settings: Settings, count: int, seconds: float, per_s: float, console) -> None:
    auth = {"authorization": f"Bearer {write_token(settings)}"}
    ids: list[str] = []
    try:
        with httpx.Client(base_url=settings.api_base_url, timeout=30) as client:
            latencies = np.array(upsert_to_searchable(client, auth, count, ids)) * 1000
        console.print(
            f"upsert-to-searchable over {len(latencies)} documents: "
            f"p50 {np.percentile(latencies, 50):.0f} ms, p99 {np.percentile(latencies, 99):.0f} ms,"
            f" max {latencies.max():.0f} ms"
        )
        quiet, busy, load = searching_with_writes(settings, auth, seconds, per_s, ids)
        console.print(
            f"search at concurrency 8 for {seconds:g} s: without writes {quiet.qps:.0f} QPS, "
            f"p99 {quiet.p99_ms:.1f} ms; with {load.rate:.0f} documents/s written "
            f"({load.errors} failed batches) {busy.qps:.0f} QPS, p99 {busy.p99_ms:.1f} ms "
            f"({busy.p99_ms / quiet.p99_ms:.2f}x); search errors {quiet.errors} / {busy.errors}"
        )
    finally:
        clean_up(settings.api_base_url, auth, ids)
