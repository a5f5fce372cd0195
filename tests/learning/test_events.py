"""Real rows: searches and feedback written through the LogWriter into PostgreSQL, read back
with `LogReader.feedback_since`, turned into triplets."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from cluster.logstore import FeedbackRecord, LogReader, LogWriter, ResultItem, SearchRecord
from learning.events import events_from_rows, shown_ids
from learning.triplets import TripletConfig, build_log_data


@pytest.fixture
def writer(settings):
    with LogWriter(settings) as logs:
        yield logs


@pytest.fixture
def reader(settings):
    with LogReader(settings) as logs:
        yield logs


def log_search(logs, query, ids, *, session, at):
    record = SearchRecord(
        query=query,
        session_id=session,
        created_at=at,
        results=[ResultItem(doc_id=d, rank=i, score=1.0 / i) for i, d in enumerate(ids, 1)],
    )
    logs.log_search(record)
    return record.id


def test_rows_from_postgres_become_triplets(writer, reader):
    start = reader.latest_feedback_id()
    t0 = datetime.now(UTC)
    tag = uuid.uuid4().hex[:8]
    human = log_search(writer, f"cheap flights {tag}", ["11", "12", "13", "14"], session=tag, at=t0)
    writer.log_feedback(
        FeedbackRecord(
            search_id=human, doc_id="13", kind="click", created_at=t0 + timedelta(seconds=3)
        )
    )
    writer.log_feedback(
        FeedbackRecord(
            search_id=human, doc_id="13", kind="click", created_at=t0 + timedelta(seconds=4)
        )
    )
    writer.log_feedback(
        FeedbackRecord(
            search_id=human, doc_id="14", kind="not_relevant", created_at=t0 + timedelta(seconds=6)
        )
    )
    bot = log_search(
        writer, f"bot query {tag}", ["21", "22", "23", "24", "25"], session=f"bot-{tag}", at=t0
    )
    for i, doc_id in enumerate(("21", "22", "23", "24", "25")):  # clicks on everything it was shown
        writer.log_feedback(
            FeedbackRecord(
                search_id=bot,
                doc_id=doc_id,
                kind="click",
                created_at=t0 + timedelta(seconds=2 + 2 * i),
            )
        )
    assert writer.flush(timeout=30)

    rows = reader.feedback_since(start)
    assert len(rows) == 8
    events = events_from_rows(rows)
    assert events[0].shown == ("11", "12", "13", "14")
    assert events[0].session_id == tag and events[0].search_id == str(human)

    data = build_log_data(events, TripletConfig(holdout_fraction=0.0))
    assert data.events_read == 8 and data.bot_sessions == 1
    assert sorted((t.positive, t.negative, t.source) for t in data.train) == [
        ("13", "11", "skip_above"),
        ("13", "12", "skip_above"),
        ("13", "14", "not_relevant"),
    ]
    assert all(t.query == f"cheap flights {tag}" for t in data.train)


def test_shown_ids_follow_rank_not_storage_order():
    stored = [{"doc_id": "7", "rank": 2, "score": 0.1}, {"doc_id": "9", "rank": 1, "score": 0.2}]
    assert shown_ids(stored) == ("9", "7")
    assert shown_ids([]) == ()
