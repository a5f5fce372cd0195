"""The log store: searches and feedback in PostgreSQL, written without ever holding up a search.

Writes (`log_search`, `log_feedback`) only put the record on an in-memory queue. One background
thread writes the queue to PostgreSQL in batches; while PostgreSQL is unreachable it appends
the records to the on-disk buffer instead, and keeps appending there (to preserve order: a
search is always written before its feedback) until the buffer has been drained into the
database. Inserts are `ON CONFLICT DO NOTHING` on client-made UUIDs, so a replayed record is
written once. A record the database refuses for its content (for example feedback for a search
that never existed) goes to `rejected.jsonl` in the buffer folder and is counted.

Reads raise psycopg errors when PostgreSQL is down: they serve batch jobs, not searches.

Watermark consistency: feedback ids come from a sequence, and two transactions can commit out
of id order. Feedback writers hold a shared advisory lock for their transaction and
`feedback_since` takes it exclusively for its read, so every row it returns was committed
before any row with a higher id, and a later read never finds a new row below its watermark.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from cluster.config import Settings
from cluster.logstore.buffer import DiskBuffer
from cluster.logstore.migrate import apply_migrations
from cluster.logstore.records import FeedbackRecord, ResultItem, SearchRecord

log = logging.getLogger(__name__)

FEEDBACK_LOCK = 0x7477_6662  # advisory lock key: feedback writers (shared) vs readers (exclusive)
DEFAULT_LOOP = "reinforce"
QUEUE_LIMIT = 10_000  # records held in memory before the caller's thread spills them to disk
BATCH = 256
# The writer gathers records for up to this long after the first one, so a busy ingress writes
# one transaction per ~50 ms instead of one per few searches (each costs a connection check,
# BEGIN and COMMIT round trips and writer-thread CPU that competes with the event loop).
GATHER_S = 0.05
RETRY_MIN_S, RETRY_MAX_S = 0.5, 5.0
WRITE_WAIT_S = 1.0  # how long the writer waits for a connection before buffering to disk
UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)

INSERT_SEARCH = """
INSERT INTO searches (id, created_at, session_id, query, model_version, mode, latency_ms, results)
VALUES (%(id)s::uuid, %(created_at)s::timestamptz, %(session_id)s, %(query)s,
        %(model_version)s, %(mode)s, %(latency_ms)s, %(results)s::jsonb)
ON CONFLICT (id) DO NOTHING
"""
# `rank` defaults to where the pid was shown in its search.
INSERT_FEEDBACK = """
INSERT INTO feedback (event_id, search_id, pid, rank, kind, created_at)
VALUES (%(event_id)s::uuid, %(search_id)s::uuid, %(pid)s,
        COALESCE(%(rank)s::integer,
                 (SELECT (r ->> 'rank')::integer
                    FROM searches s, jsonb_array_elements(s.results) AS r
                   WHERE s.id = %(search_id)s::uuid AND (r ->> 'pid')::bigint = %(pid)s
                   LIMIT 1)),
        %(kind)s, %(created_at)s::timestamptz)
ON CONFLICT (event_id) DO NOTHING
"""
FEEDBACK_SINCE = """
SELECT f.id, f.event_id, f.search_id, f.pid, f.rank, f.kind, f.created_at,
       s.session_id, s.query, s.model_version, s.mode, s.latency_ms, s.results,
       s.created_at AS searched_at
  FROM feedback f JOIN searches s ON s.id = f.search_id
 WHERE f.id > %(watermark)s
 ORDER BY f.id
 LIMIT %(limit)s
"""


def _search_row(record: SearchRecord) -> dict:
    row = record.model_dump(mode="json")
    row["results"] = json.dumps(row["results"])
    return {"type": "search", **row}


def _feedback_row(record: FeedbackRecord) -> dict:
    return {"type": "feedback", **record.model_dump(mode="json")}


class LogStore:
    def __init__(self, settings: Settings, *, buffer_dir: Path | None = None):
        self.settings = settings
        self.pool = ConnectionPool(
            settings.dsn,
            min_size=1,
            max_size=max(2, settings.postgres_pool_max),
            timeout=5,
            open=True,  # without waiting: PostgreSQL may be down, searches must still be served
            check=ConnectionPool.check_connection,
            kwargs={"connect_timeout": 3, "application_name": "twotower-logstore"},
            name="twotower-logstore",
        )
        self.buffer = DiskBuffer(buffer_dir or settings.buffer_dir, settings.log_buffer_max_bytes)
        self.rejected_path = self.buffer.folder / "rejected.jsonl"
        self.written = 0
        self.transactions = 0
        self.rejected = 0
        self._queue: queue.Queue[dict] = queue.Queue(maxsize=QUEUE_LIMIT)
        self._migrated = False
        self._retry_at = 0.0
        self._retry_delay = RETRY_MIN_S
        self._stop = threading.Event()
        try:
            self._ensure_schema()
        except UNAVAILABLE as err:
            log.warning("PostgreSQL unreachable at start (%s); buffering logs to disk", err)
        self._writer = threading.Thread(target=self._run, name="logstore-writer", daemon=True)
        self._writer.start()

    # ------------------------------------------------------------------ writing (never raises)
    def log_search(self, record: SearchRecord) -> None:
        self._enqueue(record, _search_row)

    def log_feedback(self, record: FeedbackRecord) -> None:
        self._enqueue(record, _feedback_row)

    def _enqueue(self, record, to_row) -> None:
        try:
            row = to_row(record)
        except Exception:
            log.exception("not a log record: %r", record)
            return
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            try:
                self.buffer.append([row])
            except Exception:
                log.exception("could not buffer a log record")

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything logged so far is in PostgreSQL (True) or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0 and not self.buffer.pending():
                return True
            self._retry_at = 0.0  # do not wait for the back-off
            time.sleep(0.05)
        return False

    def stats(self) -> dict[str, int]:
        return {
            "queued": self._queue.qsize(),
            "written": self.written,
            "transactions": self.transactions,
            "buffer_bytes": self.buffer.size,
            "buffered": self.buffer.appended,
            "dropped": self.buffer.dropped,
            "rejected": self.rejected,
        }

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (or buffer it on disk), then release the pool."""
        self._stop.set()
        self._writer.join(timeout)
        self.buffer.close()
        self.pool.close()

    def __enter__(self) -> LogStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the writer thread
    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch and self._stop.is_set() and self._queue.empty():
                break
            if batch:
                if self.buffer.pending() or time.monotonic() < self._retry_at:
                    self._spill(batch)
                else:
                    try:
                        self._write(batch)
                    except UNAVAILABLE as err:
                        self._unavailable(err)
                        self._spill(batch)
                for _ in batch:
                    self._queue.task_done()
            if not self._stop.is_set() and time.monotonic() >= self._retry_at:
                self._drain()
        if not self.buffer.pending():
            return
        try:  # last chance before exit; whatever stays on disk is drained next time
            self.buffer.drain(self._write)
        except UNAVAILABLE:
            pass
        except Exception:
            log.exception("log-buffer drain at close failed")

    def _take_batch(self) -> list[dict]:
        try:
            batch = [self._queue.get(timeout=0.2)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + GATHER_S
        while len(batch) < BATCH:
            try:  # a timeout of 0 takes only what is already queued
                batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _spill(self, batch: list[dict]) -> None:
        try:
            self.buffer.append(batch)
        except Exception:
            log.exception("could not write %d log records to the disk buffer", len(batch))

    def _drain(self) -> None:
        try:
            if self.buffer.pending():
                self.buffer.drain(self._write)
            self._retry_delay = RETRY_MIN_S
        except UNAVAILABLE as err:
            self._unavailable(err)
        except Exception:
            log.exception("log-buffer drain failed")
            self._unavailable(None)

    def _unavailable(self, err) -> None:
        if self._retry_delay == RETRY_MIN_S:
            log.warning("PostgreSQL unavailable (%s); logging to %s", err, self.buffer.folder)
        self._retry_at = time.monotonic() + self._retry_delay
        self._retry_delay = min(RETRY_MAX_S, self._retry_delay * 2)

    def _write(self, rows: list[dict]) -> None:
        """Insert `rows` in order in one transaction; on a content error, row by row."""
        self._ensure_schema()
        try:
            with self.pool.connection(timeout=WRITE_WAIT_S) as conn:
                self._insert(conn, rows)
            self.written += len(rows)
            self.transactions += 1
        except UNAVAILABLE:
            raise
        except psycopg.Error:
            for row in rows:
                try:
                    with self.pool.connection(timeout=WRITE_WAIT_S) as conn:
                        self._insert(conn, [row])
                    self.written += 1
                except UNAVAILABLE:
                    raise
                except psycopg.Error as err:
                    self._reject(row, err)

    @staticmethod
    def _insert(conn: psycopg.Connection, rows: list[dict]) -> None:
        """In order; each run of one kind is one ``executemany``, which psycopg pipelines
        (one round trip per run instead of one per row: the ingress writes every search)."""
        with conn.transaction(), conn.cursor() as cur:
            if any(r["type"] == "feedback" for r in rows):
                cur.execute("SELECT pg_advisory_xact_lock_shared(%s)", (FEEDBACK_LOCK,))
            for kind, run in itertools.groupby(rows, key=lambda r: r["type"]):
                cur.executemany(INSERT_SEARCH if kind == "search" else INSERT_FEEDBACK, list(run))

    def _reject(self, row: dict, err: Exception) -> None:
        self.rejected += 1
        log.error("PostgreSQL refused a %s record: %s", row.get("type"), err)
        with open(self.rejected_path, "a") as f:
            f.write(json.dumps({"error": str(err).strip(), "record": row}) + "\n")

    def _ensure_schema(self) -> None:
        if self._migrated:
            return
        with self.pool.connection(timeout=WRITE_WAIT_S) as conn:
            apply_migrations(conn)
        self._migrated = True

    # ------------------------------------------------------------------ reading
    def _conn(self):
        self._ensure_schema()
        return self.pool.connection()

    def get_search(self, search_id: uuid.UUID | str) -> SearchRecord | None:
        with self._conn() as conn:
            row = (
                conn.cursor(row_factory=dict_row)
                .execute(
                    "SELECT id, created_at, session_id, query, model_version, mode,"
                    " latency_ms, results FROM searches WHERE id = %s::uuid",
                    (str(search_id),),
                )
                .fetchone()
            )
        if row is None:
            return None
        row["results"] = [ResultItem(**r) for r in row["results"]]
        return SearchRecord.model_construct(**row)

    def feedback_since(self, watermark: int, limit: int | None = None) -> list[dict[str, Any]]:
        """Feedback with id > watermark, oldest first, each joined with its search."""
        with self._conn() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (FEEDBACK_LOCK,))
            cur = conn.cursor(row_factory=dict_row)
            return cur.execute(FEEDBACK_SINCE, {"watermark": watermark, "limit": limit}).fetchall()

    def latest_feedback_id(self) -> int:
        with self._conn() as conn:
            return conn.execute("SELECT coalesce(max(id), 0) FROM feedback").fetchone()[0]

    # -- the learning loop's runs and watermark
    def start_run(
        self, parent_version: str | None = None, watermark_from: int | None = None
    ) -> int:
        with self._conn() as conn:
            return conn.execute(
                "INSERT INTO reinforce_runs (parent_version, watermark_from)"
                " VALUES (%s, %s) RETURNING id",
                (parent_version, watermark_from),
            ).fetchone()[0]

    def finish_run(
        self,
        run_id: int,
        status: str,
        *,
        reason: str | None = None,
        candidate_version: str | None = None,
        metrics: dict | None = None,
        events_used: int | None = None,
        watermark_to: int | None = None,
        loop: str = DEFAULT_LOOP,
    ) -> None:
        """Close a run; with `watermark_to`, advance the loop's watermark in the same commit."""
        with self._conn() as conn, conn.transaction():
            updated = conn.execute(
                "UPDATE reinforce_runs SET finished_at = now(), status = %s, reason = %s,"
                " candidate_version = %s, metrics = %s, events_used = %s, watermark_to = %s"
                " WHERE id = %s",
                (status, reason, candidate_version, Jsonb(metrics or {}), events_used,
                 watermark_to, run_id),
            ).rowcount  # fmt: skip
            if updated != 1:
                raise LookupError(f"no learning-loop run with id {run_id}")
            if watermark_to is not None:
                self._set_watermark(conn, watermark_to, loop)

    def mark_stale_runs(self, reason: str) -> int:
        """Runs still 'running' (their process died) become 'crashed'; returns how many."""
        with self._conn() as conn:
            return conn.execute(
                "UPDATE reinforce_runs SET status = 'crashed', finished_at = now(), reason = %s"
                " WHERE status = 'running'",
                (reason,),
            ).rowcount

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        with self._conn() as conn:
            cur = conn.cursor(row_factory=dict_row)
            return cur.execute("SELECT * FROM reinforce_runs WHERE id = %s", (run_id,)).fetchone()

    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent runs, newest first."""
        with self._conn() as conn:
            cur = conn.cursor(row_factory=dict_row)
            return cur.execute(
                "SELECT * FROM reinforce_runs ORDER BY started_at DESC, id DESC LIMIT %s", (limit,)
            ).fetchall()

    def get_watermark(self, loop: str = DEFAULT_LOOP) -> int:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT watermark FROM loop_state WHERE name = %s", (loop,)
            ).fetchone()
        return row[0] if row else 0

    def set_watermark(self, watermark: int, loop: str = DEFAULT_LOOP) -> None:
        with self._conn() as conn:
            self._set_watermark(conn, watermark, loop)

    @staticmethod
    def _set_watermark(conn: psycopg.Connection, watermark: int, loop: str) -> None:
        conn.execute(
            "INSERT INTO loop_state (name, watermark) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET watermark = EXCLUDED.watermark, updated_at = now()",
            (loop, watermark),
        )
