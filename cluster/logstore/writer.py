"""The ingress's log writer: searches and feedback into PostgreSQL, never holding up a search.

`log_search` and `log_feedback` only put the record on an in-memory queue. One background
thread writes the queue to PostgreSQL in batches; while PostgreSQL is unreachable it appends
the records to the on-disk buffer instead, and keeps appending there (to preserve order: a
search is always written before its feedback) until the buffer has been drained into the
database. Inserts are `ON CONFLICT DO NOTHING` on client-made UUIDs, so a replayed record is
written once. A record the database refuses for its content (for example feedback for a search
that never existed) goes to `rejected.jsonl` in the buffer folder and is counted.

Only processes that log (the ingress, a test feeding the loop) make one: it owns a thread, a
pool and the disk buffer, which it drains. Everything else reads through `LogReader`.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import threading
import time
from pathlib import Path

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from cluster.config import Settings
from cluster.logstore.buffer import DiskBuffer
from cluster.logstore.migrate import FEEDBACK_LOCK, Schema
from cluster.logstore.records import FeedbackRecord, SearchRecord

log = logging.getLogger(__name__)

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


def _search_row(record: SearchRecord) -> dict:
    row = record.model_dump(mode="json")
    row["results"] = json.dumps(row["results"])
    return {"type": "search", **row}


def _feedback_row(record: FeedbackRecord) -> dict:
    return {"type": "feedback", **record.model_dump(mode="json")}


class LogWriter:
    def __init__(self, settings: Settings, *, buffer_dir: Path | None = None):
        self.settings = settings
        self.pool = ConnectionPool(
            settings.dsn,
            min_size=1,
            max_size=max(2, settings.postgres_pool_max),
            timeout=5,
            open=True,  # without waiting: PostgreSQL may be down, searches must still be served
            check=ConnectionPool.check_connection,
            kwargs={"connect_timeout": 3, "application_name": "twotower-logwriter"},
            name="twotower-logwriter",
        )
        self.buffer = DiskBuffer(buffer_dir or settings.buffer_dir, settings.log_buffer_max_bytes)
        self.rejected_path = self.buffer.folder / "rejected.jsonl"
        self.schema = Schema()
        self.written = 0
        self.transactions = 0
        self.rejected = 0
        self._queue: queue.Queue[dict] = queue.Queue(maxsize=QUEUE_LIMIT)
        self._retry_at = 0.0
        self._retry_delay = RETRY_MIN_S
        self._stop = threading.Event()
        try:
            self._ensure_schema()
        except UNAVAILABLE as err:
            log.warning("PostgreSQL unreachable at start (%s); buffering logs to disk", err)
        self._writer = threading.Thread(target=self._run, name="logstore-writer", daemon=True)
        self._writer.start()

    # ------------------------------------------------------------------ the caller's side
    def log_search(self, record: SearchRecord) -> None:
        """Never raises, never blocks (see the module docstring)."""
        self._enqueue(record, _search_row)

    def log_feedback(self, record: FeedbackRecord) -> None:
        """Never raises, never blocks; a missing `rank` is looked up from the search."""
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

    def __enter__(self) -> LogWriter:
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
        if not self.schema.ready:
            with self.pool.connection(timeout=WRITE_WAIT_S) as conn:
                self.schema.ensure(conn)
