"""The log writer against a real PostgreSQL, including a real outage in the middle of writes;
what it wrote is read back through a `LogReader`."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from cluster.logstore import FeedbackRecord, LogReader, LogWriter, ResultItem, SearchRecord
from cluster.logstore.buffer import DiskBuffer


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
    results = [ResultItem(pid=100 + i, rank=i + 1, score=1.0 - i / 10) for i in range(n)]
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
    click = FeedbackRecord(search_id=search.id, pid=101, kind="click")
    writer.log_feedback(click)
    writer.log_feedback(FeedbackRecord(search_id=search.id, pid=102, kind="relevant", rank=3))
    writer.log_search(search)  # a replay of the same record is ignored
    writer.log_feedback(click)
    assert writer.flush(30)

    stored = reader.get_search(search.id)
    assert stored.query == search.query and stored.session_id == session
    assert stored.results == search.results and stored.created_at == search.created_at
    assert reader.get_search(uuid.uuid4()) is None

    rows = [r for r in reader.feedback_since(watermark) if r["session_id"] == session]
    assert [(r["pid"], r["rank"], r["kind"]) for r in rows] == [
        (101, 2, "click"),  # rank looked up from the results the search showed
        (102, 3, "relevant"),
    ]
    assert rows[0]["query"] == search.query and rows[0]["searched_at"] == search.created_at
    assert rows[0]["results"][0] == {"pid": 100, "rank": 1, "score": 1.0}
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


def test_feedback_for_an_unknown_search_is_rejected_not_retried(writer, reader):
    session = uuid.uuid4().hex
    good = a_search(session)
    writer.log_search(good)
    writer.log_feedback(FeedbackRecord(search_id=uuid.uuid4(), pid=1, kind="click"))
    writer.log_feedback(FeedbackRecord(search_id=good.id, pid=100, kind="click"))
    writer.log_search(None)  # not a record: logged as an error, never raised into a search
    assert writer.flush(30)
    assert writer.stats()["rejected"] == 1
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
        FeedbackRecord(search_id=uuid.uuid4(), pid=1, kind="like")
    with pytest.raises(ValueError):
        FeedbackRecord(search_id="not-a-uuid", pid=1, kind="click")
    with pytest.raises(ValueError, match="finite"):
        ResultItem(pid=1, rank=1, score=float("nan"))
    with pytest.raises(ValueError):
        ResultItem(pid=-1, rank=0, score=0.0)


def test_disk_buffer_is_bounded(tmp_path):
    buffer = DiskBuffer(tmp_path, max_bytes=1_000)
    stored = buffer.append([{"type": "search", "pad": "y" * 90} for _ in range(20)])
    assert 0 < stored < 20 and buffer.dropped == 20 - stored
    assert buffer.size <= 1_000
    drained: list[dict] = []
    assert buffer.drain(drained.extend) == stored == len(drained)
    assert not buffer.pending() and buffer.size == 0


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
            logs.log_feedback(FeedbackRecord(search_id=search.id, pid=100, kind="click"))
            slowest_call = max(slowest_call, time.perf_counter() - start)
            sent += 1
            time.sleep(0.005)

    try:
        stream(1.0)
        postgres.stop()
        stream(4.0)  # longer than the writer's connection wait, so records reach the disk
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
        f" {stats['buffered']} records went through the disk buffer;"
        f" slowest log call {slowest_call * 1000:.1f} ms"
    )
    assert stats["buffered"] > 0, "the outage never reached the disk buffer"
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
        assert any(first.buffer.folder.glob("seg-*.jsonl"))
    finally:
        postgres.start()
    with LogWriter(settings, buffer_dir=tmp_path / "buffer") as second:
        assert second.flush(60)
    assert count(settings, "SELECT count(*) FROM searches WHERE session_id = %s", session) == 20
