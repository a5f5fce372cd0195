"""The click memory in a real PostgreSQL (cluster/logstore/click_memory.py): searches and
feedback written through the `LogWriter` are folded once, in order, into the same priors the
pure fold gives; readers follow the changes; silent sessions are pruned; one folder at a time.
Each test gets a database of its own, so no other test's feedback is folded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from cluster.logstore import FeedbackRecord, LogReader, LogWriter, ResultItem, SearchRecord
from cluster.logstore.click_memory import (
    CLICK_MEMORY_LOCK,
    PRUNE_HALF_LIVES,
    ClickMemoryCache,
    ClickMemoryStore,
)
from cluster.logstore.click_prior import PriorParams, build_priors, click_event
from cluster.logstore.records import client_id
from training.text import query_key


@pytest.fixture
def own_db(settings, postgres):
    """Settings pointing at a fresh, migrated-on-first-use database."""
    database = f"cm_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    dsn = postgres.dsn.rsplit("/", 1)[0] + "/" + database
    yield settings.model_copy(update={"postgres_dsn": dsn})
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')


@pytest.fixture
def writer(own_db, tmp_path):
    logs = LogWriter(own_db, buffer_dir=tmp_path / "buffer")
    yield logs
    logs.close()


@pytest.fixture
def store(own_db):
    with ClickMemoryStore(own_db, query_key) as memory:
        yield memory


def search(query: str, session: str | None, client: str | None, n: int = 5) -> SearchRecord:
    results = [ResultItem(doc_id=f"doc-{i}", rank=i, score=1.0 - i / 10) for i in range(1, n + 1)]
    return SearchRecord(
        session_id=session, client=client, query=query, mode="dense", results=results
    )


def click(writer: LogWriter, record: SearchRecord, doc_id: str, kind: str = "click") -> None:
    writer.log_feedback(FeedbackRecord(search_id=record.id, doc_id=doc_id, kind=kind))


def log_traffic(writer: LogWriter) -> None:
    """Four users click doc-4 of one query (one of them marks it relevant too), one bot clicks
    doc-5 forty times, one address opens ten sessions, and one row names an unshown result."""
    for user in range(4):
        s = search("What is  Botulism", f"user-{user}", client_id(f"198.51.100.{user}"))
        writer.log_search(s)
        click(writer, s, "doc-4")
        if user == 0:
            click(writer, s, "doc-4", "relevant")
    bot = search("what is botulism", "bot", client_id("203.0.113.1"))
    writer.log_search(bot)
    for _ in range(40):
        click(writer, bot, "doc-5")
    for i in range(10):
        s = search("what is botulism", f"many-{i}", client_id("203.0.113.2"))
        writer.log_search(s)
        click(writer, s, "doc-3")
    unshown = search("what is botulism", "liar", client_id("203.0.113.3"))
    writer.log_search(unshown)
    # through the log store directly: the ingress itself refuses such a click
    writer.log_feedback(
        FeedbackRecord(search_id=unshown.id, doc_id="never-shown", kind="click", rank=1)
    )
    assert writer.flush(30)


def test_the_fold_gives_the_pure_priors_once_and_readers_follow(own_db, writer, store):
    log_traffic(writer)
    result = store.fold()
    assert result is not None and result.folded == 4 + 1 + 40 + 10 + 1
    # capped: the bot's 39 clicks after its first, and user-0's mark after a click at the cap
    assert result.ignored == {"capped": 40, "client": 9, "unshown": 1}
    assert store.fold().folded == 0, "a second fold finds nothing new"

    with LogReader(own_db) as reader:
        rows = reader.feedback_since(0)
    assert all("client" in row for row in rows)
    expected = build_priors(
        [click_event(r, query_key) for r in rows], PriorParams.from_settings(own_db)
    )["what is botulism"]
    cache = ClickMemoryCache(min_sessions=1, half_life_s=own_db.click_memory_half_life_s)
    cache.apply(store.changes_since(0))
    held = cache.priors["what is botulism"]
    assert set(held) == set(expected) == {"doc-3", "doc-4", "doc-5"}
    for doc_id, prior in expected.items():
        assert held[doc_id].sessions == prior.sessions
        assert held[doc_id].evidence == pytest.approx(prior.evidence, rel=1e-9)
    assert held["doc-4"].sessions == 4 and held["doc-5"].sessions == 1
    assert held["doc-3"].sessions == 1  # ten sessions, one address

    counts = store.counts()
    assert counts["folded"] == 56 and counts["watermark"] == rows[-1]["id"]
    assert counts["ignored"] == {"capped": 40, "unshown": 1, "client": 9}
    assert counts["folded_at"] is not None

    # a reader that needs three sessions holds only doc-4, and learns of new ones
    strict = ClickMemoryCache(min_sessions=3, half_life_s=own_db.click_memory_half_life_s)
    strict.apply(store.changes_since(0))
    assert strict.queries() == 1 and set(strict.priors["what is botulism"]) == {"doc-4"}
    for user in range(4, 7):
        s = search("what is botulism", f"user-{user}", client_id(f"198.51.100.{user}"))
        writer.log_search(s)
        click(writer, s, "doc-2")
    assert writer.flush(30) and store.fold().folded == 3
    strict.apply(store.changes_since(strict.seq))
    assert set(strict.priors["what is botulism"]) == {"doc-2", "doc-4"}
    assert strict.documents() == 2


def test_a_lookup_decays_to_now(own_db, writer, store):
    log_traffic(writer)
    store.fold()
    cache = ClickMemoryCache(min_sessions=3, half_life_s=own_db.click_memory_half_life_s)
    cache.apply(store.changes_since(0))
    prior = cache.priors["what is botulism"]["doc-4"]
    later = prior.as_of + timedelta(seconds=own_db.click_memory_half_life_s)
    now = cache.lookup("what is botulism", later)["doc-4"]
    assert now.evidence == pytest.approx(prior.evidence / 2) and now.sessions == 4
    assert cache.lookup("never asked", later) == {}


def test_silent_sessions_are_pruned_and_readers_drop_their_priors(own_db, writer, store):
    log_traffic(writer)
    store.fold()
    cache = ClickMemoryCache(min_sessions=1, half_life_s=own_db.click_memory_half_life_s)
    cache.apply(store.changes_since(0))
    assert cache.queries() == 1
    far = datetime.now(UTC) + timedelta(
        seconds=(PRUNE_HALF_LIVES + 1) * own_db.click_memory_half_life_s
    )
    result = store.fold(now=far)
    assert result.folded == 0 and result.priors_changed == 3
    cache.apply(store.changes_since(cache.seq))
    assert cache.queries() == 0 and cache.documents() == 0
    with psycopg.connect(own_db.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM click_memory_sessions").fetchone()[0] == 0


def test_one_folder_at_a_time(own_db, writer, store):
    log_traffic(writer)
    with psycopg.connect(own_db.dsn, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (CLICK_MEMORY_LOCK,))
        assert store.fold() is None  # another process is folding
        other.execute("SELECT pg_advisory_unlock(%s)", (CLICK_MEMORY_LOCK,))
    assert store.fold().folded == 56


def test_searches_record_a_client_hash_never_the_address(own_db, writer):
    record = search("flu", "s", client_id("192.0.2.44"))
    writer.log_search(record)
    legacy = search("flu", "old", None)  # a search logged before clients were recorded
    writer.log_search(legacy)
    assert writer.flush(30)
    with LogReader(own_db) as reader:
        stored = reader.get_search(record.id)
        assert reader.get_search(legacy.id).client is None
    assert stored.client == client_id("192.0.2.44") and "192.0.2.44" not in stored.client
    assert client_id("192.0.2.44") != client_id("192.0.2.45")
    assert len(stored.client) == 16
