"""The log reader and the shared schema against a real PostgreSQL: migrations, the learning
loop's runs and watermark, and that reading never touches the ingress's writer side."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from cluster.logstore import LogReader
from cluster.logstore.migrate import apply_migrations, discover
from cluster.logstore.wal import WriteAheadLog


@pytest.fixture
def reader(settings):
    with LogReader(settings) as logs:
        yield logs


def test_migrations_run_twice_and_from_two_processes_at_once(postgres):
    database = f"mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    dsn = postgres.dsn.rsplit("/", 1)[0] + "/" + database
    applied: list[list[int]] = []
    barrier = threading.Barrier(2)

    def migrate():
        with psycopg.connect(dsn) as conn:
            barrier.wait()
            applied.append(apply_migrations(conn))

    threads = [threading.Thread(target=migrate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [m.version for m in discover()]
    assert sorted(applied) == [[], every]  # one connection applied them all, the other none
    with psycopg.connect(dsn) as conn:
        assert apply_migrations(conn) == []  # a third run is a no-op
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
        assert versions == every
        conn.execute("SELECT id, event_id, search_id FROM feedback LIMIT 0")


def test_string_id_migration_keeps_the_logs_a_database_already_holds(postgres, tmp_path):
    """A database made before documents had string ids: its feedback rows and the results its
    searches showed come through migration 0002 with the same ids, as strings."""
    database = f"mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    dsn = postgres.dsn.rsplit("/", 1)[0] + "/" + database
    first = tmp_path / "first"
    first.mkdir()
    (first / "0001_initial.sql").write_text(discover()[0].sql)
    search = uuid.uuid4()
    with psycopg.connect(dsn) as conn:
        assert apply_migrations(conn, first) == [1]
        conn.execute(
            "INSERT INTO searches (id, created_at, query, mode, results) VALUES "
            "(%s, now(), 'q', 'dense', %s::jsonb)",
            (search, '[{"pid": 42, "rank": 1, "score": 0.9}, {"pid": 7, "rank": 2, "score": 0.1}]'),
        )
        conn.execute(
            "INSERT INTO feedback (event_id, search_id, pid, rank, kind, created_at) "
            "VALUES (%s, %s, 7, 2, 'click', now())",
            (uuid.uuid4(), search),
        )
        conn.commit()
        assert 2 in apply_migrations(conn)
        results = conn.execute("SELECT results FROM searches WHERE id = %s", (search,)).fetchone()
        assert results[0] == [
            {"doc_id": "42", "rank": 1, "score": 0.9},
            {"doc_id": "7", "rank": 2, "score": 0.1},
        ]
        assert conn.execute("SELECT doc_id FROM feedback").fetchall() == [("7",)]


def test_runs_and_watermark(reader):
    loop = f"test-{uuid.uuid4().hex[:8]}"
    assert reader.get_watermark(loop) == 0
    run = reader.start_run(parent_version="v1", watermark_from=0)
    assert reader.get_run(run)["status"] == "running"
    reader.finish_run(
        run, "published", reason="better", candidate_version="v2", metrics={"mrr": 0.3},
        events_used=7, watermark_to=42, loop=loop,
    )  # fmt: skip
    finished = reader.get_run(run)
    assert finished["status"] == "published" and finished["metrics"] == {"mrr": 0.3}
    assert finished["finished_at"] is not None and finished["watermark_to"] == 42
    assert reader.get_watermark(loop) == 42
    assert reader.list_runs(limit=1)[0]["id"] == run

    stale = reader.start_run(parent_version="v2", watermark_from=42)
    assert reader.mark_stale_runs("crashed") >= 1
    assert reader.get_run(stale)["status"] == "crashed"
    reader.finish_run(stale, "failed", loop=loop)  # no watermark_to: the watermark stays
    assert reader.get_watermark(loop) == 42
    reader.set_watermark(50, loop)
    assert reader.get_watermark(loop) == 50
    with pytest.raises(LookupError):
        reader.finish_run(10**12, "failed")


def test_a_reader_starts_no_thread_and_leaves_the_buffer_alone(settings, tmp_path):
    """The learning loop reads while the ingress may hold records on disk: a second drainer of
    that folder once lost a click, so reading must not drain, create or even open it."""
    folder = tmp_path / "buffer"
    left = WriteAheadLog(folder, max_bytes=1_000_000)
    left.append({"type": "search", "id": str(uuid.uuid4()), "query": "left by the ingress"})
    left.close()
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    threads = set(threading.enumerate())

    with LogReader(settings.model_copy(update={"log_buffer_dir": folder})) as reader:
        run = reader.start_run(parent_version="v1", watermark_from=0)
        reader.finish_run(run, "failed", reason="test")
        reader.feedback_since(reader.latest_feedback_id())
        reader.list_runs(limit=1)
        assert set(threading.enumerate()) == threads

    assert {
        p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    } == before
    assert set(threading.enumerate()) == threads


def test_a_reader_fails_loudly_while_postgres_is_down_and_reconnects_after(
    postgres, settings, reader
):
    assert reader.get_watermark() >= 0  # its connection is open now
    postgres.stop()
    try:
        with pytest.raises(psycopg.OperationalError):
            reader.get_watermark()
    finally:
        postgres.start()
    assert reader.get_watermark() >= 0  # the same reader, a new connection
