"""The log writer against a real PostgreSQL, including a real outage in the middle of writes;
what it wrote is read back through a `LogReader`."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import httpx
import psycopg
import pytest

from cluster.config import REPO_ROOT
from cluster.logstore import FeedbackRecord, LogReader, LogWriter, ResultItem, SearchRecord
from cluster.logstore.buffer import DRAIN_LOCK, BufferFolder
from cluster.logstore.wal import WriteAheadLog


@pytest.fixture
def writer(settings, tmp_path):
    logs = LogWriter(settings, buffer_dir=tmp_path / "buffer")
    yield logs
    logs.close()


@pytest.fixture
def reader(settings):
    with LogReader(settings) as logs:
        yield logs


def a_search(session: str, query: str = "what is a two tower model", n: int = 3) -> SearchRecord:
    results = [ResultItem(doc_id=str(100 + i), rank=i + 1, score=1.0 - i / 10) for i in range(n)]
    return SearchRecord(
        session_id=session, query=query, model_version="v-test", latency_ms=12.5, results=results
    )


def count(settings, sql: str, *params) -> int:
    with psycopg.connect(settings.dsn) as conn:
        return conn.execute(sql, params).fetchone()[0]


def test_write_and_read_back(writer, reader, settings):
    session = uuid.uuid4().hex
    search = a_search(session)
    watermark = reader.latest_feedback_id()
    writer.log_search(search)
    click = FeedbackRecord(search_id=search.id, doc_id="101", kind="click")
    writer.log_feedback(click)
    writer.log_feedback(FeedbackRecord(search_id=search.id, doc_id="102", kind="relevant", rank=3))
    writer.log_search(search)  # a replay of the same record is ignored
    writer.log_feedback(click)
    assert writer.flush(30)

    stored = reader.get_search(search.id)
    assert stored.query == search.query and stored.session_id == session
    assert stored.results == search.results and stored.created_at == search.created_at
    assert reader.get_search(uuid.uuid4()) is None

    rows = [r for r in reader.feedback_since(watermark) if r["session_id"] == session]
    assert [(r["doc_id"], r["rank"], r["kind"]) for r in rows] == [
        ("101", 2, "click"),  # rank looked up from the results the search showed
        ("102", 3, "relevant"),
    ]
    assert rows[0]["query"] == search.query and rows[0]["searched_at"] == search.created_at
    assert rows[0]["results"][0] == {"doc_id": "100", "rank": 1, "score": 1.0}
    later = [r["event_id"] for r in reader.feedback_since(rows[0]["id"])]
    assert rows[0]["event_id"] not in later and rows[1]["event_id"] in later
    assert count(settings, "SELECT count(*) FROM searches WHERE session_id = %s", session) == 1


def test_a_steady_trickle_of_searches_is_written_in_few_transactions(writer):
    """Searches arrive one at a time under load (one every 2 ms is 500 per second); the writer
    gathers them for GATHER_S instead of paying a transaction for each few."""
    before = writer.stats()
    for _ in range(60):
        writer.log_search(a_search(uuid.uuid4().hex))
        time.sleep(0.002)
    assert writer.flush(30)
    after = writer.stats()
    assert after["written"] - before["written"] == 60
    transactions = after["transactions"] - before["transactions"]
    assert 1 <= transactions <= 20, f"60 searches over >= 120 ms took {transactions} transactions"


def test_feedback_for_an_unknown_search_is_rejected_once_the_wait_is_over(
    settings, reader, tmp_path
):
    """Held for `log_feedback_wait_s` (its search might still be in another writer's buffer),
    then set aside in rejected.jsonl and counted."""
    quick = settings.model_copy(update={"log_feedback_wait_s": 0.5})
    session = uuid.uuid4().hex
    good = a_search(session)
    with LogWriter(quick, buffer_dir=tmp_path / "buffer") as writer:
        assert writer.log_search(good)
        assert writer.log_feedback(FeedbackRecord(search_id=uuid.uuid4(), doc_id="1", kind="click"))
        assert writer.log_feedback(FeedbackRecord(search_id=good.id, doc_id="100", kind="click"))
        assert not writer.log_search(None)  # not a record: logged, never raised into a search
        assert writer.flush(30)
        stats = writer.stats()
    assert (stats["held"], stats["retried"], stats["rejected"]) == (1, 0, 1)
    assert "search_id" in writer.rejected_path.read_text()
    assert reader.get_search(good.id) is not None


def test_hostile_text_is_refused_clearly_or_stored_safely(writer, reader, settings):
    session = uuid.uuid4().hex
    long_query = "x" * 10_000
    injection = "'); DROP TABLE searches; -- \\ % %s $1 \" `"
    nul = "before\x00after"
    broken_utf8 = b"caf\xc3 \xff".decode("utf-8", "surrogateescape")

    records = [a_search(session, q) for q in (long_query, injection, nul, broken_utf8)]
    for record in records:
        writer.log_search(record)
    assert writer.flush(30)
    stored = [reader.get_search(r.id).query for r in records]
    assert stored[0] == long_query
    assert stored[1] == injection
    assert stored[2] == "before\ufffdafter"  # PostgreSQL text cannot hold NUL
    assert stored[3] == "caf\ufffd \ufffd"  # lone surrogates cannot be UTF-8
    assert count(settings, "SELECT count(*) FROM searches WHERE session_id = %s", session) == 4

    with pytest.raises(ValueError, match="query has 10001 characters"):
        SearchRecord(query="x" * 10_001)
    with pytest.raises(ValueError, match="query must be a string"):
        SearchRecord(query=b"bytes")
    with pytest.raises(ValueError):
        FeedbackRecord(search_id=uuid.uuid4(), doc_id="1", kind="like")
    with pytest.raises(ValueError):
        FeedbackRecord(search_id="not-a-uuid", doc_id="1", kind="click")
    with pytest.raises(ValueError, match="finite"):
        ResultItem(doc_id="1", rank=1, score=float("nan"))
    with pytest.raises(ValueError):
        ResultItem(doc_id="", rank=0, score=0.0)


def test_records_buffered_before_string_ids_still_replay(settings, reader, tmp_path):
    """A disk buffer left by a version whose records named documents `pid` (an integer), as
    an upgrade during a PostgreSQL outage leaves it: the next writer stores every record, with
    string ids, and rejects none."""
    session = uuid.uuid4().hex
    search_id, event_id = uuid.uuid4(), uuid.uuid4()
    old = WriteAheadLog(tmp_path / "buffer", max_bytes=1 << 20, fsync=False)
    old.append(
        {"type": "search", "id": str(search_id), "created_at": "2026-12-01T10:00:00Z",
         "session_id": session, "query": "old record", "model_version": "v-old",
         "mode": "dense", "latency_ms": 3.0,
         "results": '[{"pid": 7, "rank": 1, "score": 0.5}, {"pid": 8, "rank": 2, "score": 0.4}]'}
    )  # fmt: skip
    old.append(
        {"type": "feedback", "event_id": str(event_id), "search_id": str(search_id), "pid": 8,
         "kind": "click", "rank": None, "created_at": "2026-12-01T10:00:05Z"}
    )  # fmt: skip
    old.close()
    watermark = reader.latest_feedback_id()
    with LogWriter(settings, buffer_dir=tmp_path / "buffer") as writer:
        assert writer.flush(30)
        assert writer.stats()["rejected"] == 0
    stored = reader.get_search(search_id)
    assert [(r.doc_id, r.rank) for r in stored.results] == [("7", 1), ("8", 2)]
    rows = [r for r in reader.feedback_since(watermark) if r["session_id"] == session]
    assert [(r["doc_id"], r["rank"]) for r in rows] == [("8", 2)]


def test_the_buffer_is_bounded_and_what_it_drops_is_counted(tmp_path):
    wal = WriteAheadLog(tmp_path, max_bytes=1_000)
    stored = [wal.append({"type": "search", "pad": "y" * 90}) for _ in range(20)]
    assert 0 < sum(stored) < 20 and stored == sorted(stored, reverse=True)
    assert wal.dropped == 20 - sum(stored) == stored.count(False)
    folder = BufferFolder(tmp_path)
    assert folder.size() <= 1_000
    wal.close()
    with folder.drain_lock() as ours:
        assert ours
        batch = folder.read(limit=100)
        folder.commit(batch)
    assert len(batch.records) == sum(stored)
    assert folder.size() == 0 and not list(tmp_path.glob("w-*"))  # a dead, drained stream goes


def test_postgres_outage_mid_stream_loses_and_duplicates_nothing(postgres, settings, tmp_path):
    """Stop PostgreSQL while a stream of searches and clicks is being logged, restart it, and
    count: every record arrives exactly once."""
    session = uuid.uuid4().hex
    logs = LogWriter(settings, buffer_dir=tmp_path / "buffer")
    sent = 0
    slowest_call = 0.0

    def stream(seconds: float) -> None:
        nonlocal sent, slowest_call
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            search = a_search(session, f"outage query {sent}")
            start = time.perf_counter()
            logs.log_search(search)
            logs.log_feedback(FeedbackRecord(search_id=search.id, doc_id="100", kind="click"))
            slowest_call = max(slowest_call, time.perf_counter() - start)
            sent += 1
            time.sleep(0.005)

    try:
        stream(1.0)
        postgres.stop()
        stream(4.0)
        waiting = logs.stats()["buffered"]  # acknowledged, on disk, not in PostgreSQL
        postgres.start()
        stream(1.0)
        assert logs.flush(120), logs.stats()
    finally:
        if not postgres.healthy():
            postgres.start()
        logs.close()
    stats = logs.stats()
    total = sent

    searches = count(settings, "SELECT count(*) FROM searches WHERE session_id = %s", session)
    distinct = count(
        settings, "SELECT count(DISTINCT query) FROM searches WHERE session_id = %s", session
    )
    clicks = count(
        settings,
        "SELECT count(*) FROM feedback f JOIN searches s ON s.id = f.search_id"
        " WHERE s.session_id = %s",
        session,
    )
    lost = 2 * total - searches - clicks
    duplicated = searches - distinct
    print(
        f"\noutage test: sent {total} searches + {total} clicks; stored {searches} searches"
        f" ({distinct} distinct) + {clicks} clicks; lost {lost}, duplicated {duplicated};"
        f" {waiting} records waited on disk at the end of the outage;"
        f" slowest log call {slowest_call * 1000:.1f} ms"
    )
    assert waiting > 0, "the outage never reached the disk buffer"
    assert (searches, distinct, clicks) == (total, total, total)
    assert stats["dropped"] == stats["rejected"] == 0
    assert slowest_call < 1.0, "logging blocked the caller"


def test_records_buffered_by_a_closed_process_are_delivered_by_the_next(
    postgres, settings, tmp_path
):
    session = uuid.uuid4().hex
    postgres.stop()
    try:
        first = LogWriter(settings, buffer_dir=tmp_path / "buffer")  # starts while PG is down
        records = [a_search(session, f"q{i}") for i in range(20)]
        for record in records:
            first.log_search(record)
        first.close()  # exits with the records still on disk
        assert any((tmp_path / "buffer").glob("w-*/wal-*.jsonl"))
    finally:
        postgres.start()
    with LogWriter(settings, buffer_dir=tmp_path / "buffer") as second:
        assert second.flush(60, all_writers=True)
        assert count(settings, "SELECT count(*) FROM searches WHERE session_id = %s", session) == 20


# ---------------------------------------------------------------------- shared folders, crashes
def test_two_writers_on_one_folder_through_an_outage_lose_nothing_parents_first(
    postgres, settings, tmp_path
):
    """Two replicas share one buffer folder; each logs searches, and clicks on the other's
    searches as well as its own, while PostgreSQL goes away and comes back. Every record
    arrives once; no feedback is refused for want of its search (one tried early is held and
    written after it), so none is rejected."""
    session = uuid.uuid4().hex
    folder = tmp_path / "buffer"
    writers = [LogWriter(settings, buffer_dir=folder), LogWriter(settings, buffer_dir=folder)]
    sent = 0

    def stream(seconds: float) -> None:
        nonlocal sent
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            own, other = writers[sent % 2], writers[(sent + 1) % 2]
            search = a_search(session, f"shared folder {sent}")
            assert own.log_search(search)
            assert other.log_feedback(
                FeedbackRecord(search_id=search.id, doc_id="100", kind="click")
            )
            assert own.log_feedback(FeedbackRecord(search_id=search.id, doc_id="101", kind="click"))
            sent += 1
            time.sleep(0.005)

    try:
        stream(1.0)
        postgres.stop()
        stream(3.0)
        postgres.start()
        stream(1.0)
        assert all(w.flush(120) for w in writers), [w.stats() for w in writers]
    finally:
        if not postgres.healthy():
            postgres.start()
        for writer in writers:
            writer.close()
    stats = [w.stats() for w in writers]
    searches = count(settings, "SELECT count(*) FROM searches WHERE session_id = %s", session)
    clicks = count(
        settings,
        "SELECT count(*) FROM feedback f JOIN searches s ON s.id = f.search_id"
        " WHERE s.session_id = %s",
        session,
    )
    print(f"\ntwo writers: sent {sent} searches + {2 * sent} clicks; stored {searches} + {clicks};"
          f" stats {stats}")  # fmt: skip
    assert (searches, clicks) == (sent, 2 * sent)
    assert all(s["rejected"] == s["dropped"] == 0 for s in stats)
    assert sum(s["held"] for s in stats) == sum(s["retried"] for s in stats)
    assert not list(folder.glob("w-*")), "closed writers' drained streams are removed"


def test_feedback_whose_search_is_still_buffered_elsewhere_is_retried_not_rejected(
    settings, reader, tmp_path, free_port
):
    """The search waits in another writer's buffer (that writer could not reach PostgreSQL);
    the click on it is held, not rejected, and written once the search lands."""
    unreachable = settings.model_copy(
        update={"postgres_dsn": f"postgresql://nobody@127.0.0.1:{free_port()}/none"}
    )
    search = a_search(uuid.uuid4().hex)
    with LogWriter(unreachable, buffer_dir=tmp_path / "elsewhere") as elsewhere:
        assert elsewhere.log_search(search)
    click = FeedbackRecord(search_id=search.id, doc_id="101", kind="click")
    with LogWriter(settings, buffer_dir=tmp_path / "here") as here:
        assert here.log_feedback(click)
        deadline = time.monotonic() + 30
        while here.stats()["held"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert here.stats()["held"] == 1 and reader.get_search(search.id) is None
        with LogWriter(settings, buffer_dir=tmp_path / "elsewhere") as recovered:
            assert recovered.flush(30, all_writers=True)
        assert here.flush(30)
        stats = here.stats()
    assert (stats["held"], stats["retried"], stats["rejected"]) == (1, 1, 0)
    rows = count(settings, "SELECT count(*) FROM feedback WHERE event_id = %s", click.event_id)
    assert rows == 1


CHILD = """
import sys
from cluster.config import get_settings
from cluster.logstore import LogWriter, SearchRecord
writer = LogWriter(get_settings(), buffer_dir=sys.argv[1])
for i in range(int(sys.argv[3])):
    record = SearchRecord(query=f"acknowledged {i}", session_id=sys.argv[2])
    if writer.log_search(record):
        print(record.id, flush=True)
sys.stdin.read()  # until killed
"""


def test_a_writer_killed_after_acknowledging_leaves_records_the_next_replays(settings, tmp_path):
    """A child process logs searches and reports each acknowledged id; it is SIGKILLed right
    after. This test holds the folder's drain lock meanwhile, so the child can write none of
    them: every acknowledged record exists only in its write-ahead file. A new writer on the
    folder replays them all, once each."""
    session = uuid.uuid4().hex
    folder = tmp_path / "buffer"
    folder.mkdir()
    acknowledged: list[str] = []
    with open(folder / DRAIN_LOCK, "ab") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(folder), session, "40"],
            cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            for line in child.stdout:  # bounded: the child acknowledges 40 records, then waits
                acknowledged.append(line.strip())
                if len(acknowledged) == 40:
                    break
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(30)
    assert len(acknowledged) == 40 and child.returncode == -signal.SIGKILL
    assert count(settings, "SELECT count(*) FROM searches WHERE session_id = %s", session) == 0

    with LogWriter(settings, buffer_dir=folder) as replay:
        assert replay.flush(60, all_writers=True)
    with psycopg.connect(settings.dsn) as conn:
        stored = conn.execute(
            "SELECT id::text FROM searches WHERE session_id = %s", (session,)
        ).fetchall()
    assert sorted(r[0] for r in stored) == sorted(acknowledged)
    assert not list(folder.glob("w-*")), "the dead writer's stream is removed once replayed"


def test_drops_are_counted_and_exported(ray_local, tmp_path):
    """A writer in a Ray worker (as in a Serve replica) past its buffer's cap: the calls say
    so, stats() counts them, and Ray's metrics export shows them to Prometheus."""
    import ray

    tiny = ray_local.model_copy(update={"log_buffer_max_bytes": 3_000})

    @ray.remote(num_cpus=0)
    class Capped:
        def __init__(self) -> None:
            self.writer = LogWriter(tiny, buffer_dir=tmp_path / "capped")

        def log(self, n: int) -> tuple[list[bool], dict]:
            calls = [self.writer.log_search(a_search("drops")) for _ in range(n)]
            return calls, self.writer.stats()

    actor = Capped.remote()
    try:
        calls, stats = ray.get(actor.log.remote(20), timeout=60)
        assert 0 < sum(calls) < 20 and stats["dropped"] == calls.count(False)
        exported = exported_value(ray_local, "ray_twotower_log_dropped_total", 60)
        print(f"\ndropped {stats['dropped']} of 20; exported {exported}")
        assert exported == stats["dropped"]
    finally:
        ray.kill(actor)


def exported_value(settings, name: str, timeout_s: float) -> float | None:
    """`name` summed over the series Ray's metrics export shows, once it shows any."""
    url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = httpx.get(url, timeout=5).text.splitlines()
        values = [float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name + "{")]
        if values:
            return sum(values)
        time.sleep(1)
    return None


def test_a_new_writer_s_stream_is_never_taken_for_a_dead_one_by_a_drainer(tmp_path):
    """A replica that starts while another drains the folder: its stream must never be seen
    half-made (folder there, owner lock not yet held), which a drainer takes for a dead
    writer's empty stream and removes, after which every record of the new writer would be
    dropped. Here a drainer commits in a tight loop while 150 writers start and append."""
    folder = BufferFolder(tmp_path)
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            with folder.drain_lock() as mine:
                if mine:
                    folder.commit(folder.read(limit=100))

    drainer = threading.Thread(target=drain)
    drainer.start()
    dropped = []
    try:
        for i in range(150):
            wal = WriteAheadLog(tmp_path, max_bytes=1 << 20, fsync=False)
            wal.append({"i": i})
            dropped.append(wal.dropped)
            wal.close()
    finally:
        stop.set()
        drainer.join()
    assert sum(dropped) == 0, f"{sum(dropped)} of 150 first records dropped"
