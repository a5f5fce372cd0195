"""The ingress's log writer: searches and feedback into PostgreSQL, durable before answered.

`log_search` and `log_feedback` append the record to this process's write-ahead file in the
buffer folder and fsync it (wal.py), so a record whose search was answered survives a crash
of the process right after. They never raise, and never wait for PostgreSQL. A background
thread drains the buffer folder into PostgreSQL in batches (buffer.py): one drainer at a time
over every writer's file (Serve replicas on one machine share the folder), in order, so a
search is written before its feedback; whatever a dead process left is replayed the same way.
Inserts are `ON CONFLICT DO NOTHING` on client-made UUIDs, so a replayed record is written
once. While PostgreSQL is unreachable the records simply wait on disk.

Feedback whose search is not in PostgreSQL yet is held and retried for
`settings.log_feedback_wait_s`; only then, like a record the database refuses for its
content, it goes to `rejected.jsonl` in the buffer folder and is counted. Drops (the buffer
full), rejections and retries are counted in `stats()` and exported as metrics
(cluster/metrics.py, `logstore_metrics`).

Only processes that log (the ingress, a test feeding the loop) make one: it owns a thread, a
pool and a stream in the buffer folder. Everything else reads through `LogReader`.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from pathlib import Path

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from cluster.config import Settings
from cluster.logstore.buffer import BufferFolder
from cluster.logstore.migrate import FEEDBACK_LOCK, Schema
from cluster.logstore.records import FeedbackRecord, SearchRecord
from cluster.logstore.wal import WriteAheadLog
from cluster.metrics import logstore_metrics

log = logging.getLogger(__name__)

BATCH = 256  # records per stream per transaction
# The thread gathers records for this long after being woken, so a busy ingress writes one
# transaction per ~50 ms instead of one per few searches (each costs a connection check,
# BEGIN and COMMIT round trips and writer-thread CPU that competes with the event loop).
GATHER_S = 0.05
POLL_S = 0.2  # also look at the folder this often: other writers' records, held feedback
DRAIN_SLICE_S = 2.0  # longest a drain holds the lock before the thread looks around again
HELD_RETRY_S = 1.0
RETRY_MIN_S, RETRY_MAX_S = 0.5, 5.0
WRITE_WAIT_S = 1.0  # how long the writer waits for a connection before trying again later
UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)
# A record PostgreSQL refuses, or one that is not a row at all (a damaged buffer line): set
# aside, so one bad record never stops the drain behind it.
REFUSED = (psycopg.Error, KeyError, TypeError, ValueError)

INSERT_SEARCH = """
INSERT INTO searches (id, created_at, session_id, client, query, model_version, mode, latency_ms,
                      results)
VALUES (%(id)s::uuid, %(created_at)s::timestamptz, %(session_id)s, %(client)s, %(query)s,
        %(model_version)s, %(mode)s, %(latency_ms)s, %(results)s::jsonb)
ON CONFLICT (id) DO NOTHING
"""
# `rank` defaults to where the document was shown in its search.
INSERT_FEEDBACK = """
INSERT INTO feedback (event_id, search_id, doc_id, rank, kind, created_at)
VALUES (%(event_id)s::uuid, %(search_id)s::uuid, %(doc_id)s,
        COALESCE(%(rank)s::integer,
                 (SELECT (r ->> 'rank')::integer
                    FROM searches s, jsonb_array_elements(s.results) AS r
                   WHERE s.id = %(search_id)s::uuid AND r ->> 'doc_id' = %(doc_id)s
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


def _current(row: dict) -> dict:
    """A buffered row as this version inserts it: rows buffered before documents had string
    ids name them `pid`, an integer; searches buffered before clients were recorded have none."""
    if row.get("type") == "search" and "client" not in row:
        row = {**row, "client": None}
    if row.get("type") == "feedback" and "pid" in row:
        row = {**row, "doc_id": str(row["pid"])}
    elif row.get("type") == "search" and '"pid"' in row.get("results", ""):
        results = json.loads(row["results"])
        for item in results:
            if "pid" in item:
                item["doc_id"] = str(item.pop("pid"))
        row = {**row, "results": json.dumps(results)}
    return row


def _waits_for_search(row: dict, err: Exception) -> bool:
    """Feedback refused only because its search is not there (yet)."""
    return row.get("type") == "feedback" and isinstance(err, psycopg.errors.ForeignKeyViolation)


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
        root = Path(buffer_dir or settings.buffer_dir)
        self.folder = BufferFolder(root)
        self.wal = WriteAheadLog(root, settings.log_buffer_max_bytes, fsync=settings.log_fsync)
        self.wal.refresh(self.folder.size())
        self.rejected_path = root / "rejected.jsonl"
        self.schema = Schema()
        self.written = 0  # rows inserted by this process's drains (a replay counts again)
        self.transactions = 0
        self.held = 0  # feedback put aside to wait for its search
        self.retried = 0  # ... and written later, once its search was there
        self.rejected = 0
        self._metrics = logstore_metrics()
        self._exported: dict[str, int] = {}
        self._retry_at = 0.0
        self._retry_delay = RETRY_MIN_S
        self._held_due = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        try:
            self._ensure_schema()
            self._drain()  # what is already waiting (a dead process's records) goes first
        except UNAVAILABLE as err:
            log.warning("PostgreSQL unreachable at start (%s); logs wait on disk", err)
        self._writer = threading.Thread(target=self._run, name="logstore-writer", daemon=True)
        self._writer.start()

    # ------------------------------------------------------------------ the caller's side
    def log_search(self, record: SearchRecord) -> bool:
        """True once the record is on disk; False if it is not a record or the buffer is
        full (dropped, counted). Never raises, never waits for PostgreSQL."""
        return self._log(record, _search_row)

    def log_feedback(self, record: FeedbackRecord) -> bool:
        """As `log_search`; a missing `rank` is looked up from the search when written."""
        return self._log(record, _feedback_row)

    def _log(self, record, to_row) -> bool:
        try:
            row = to_row(record)
        except Exception:
            log.exception("not a log record: %r", record)
            return False
        stored = self.wal.append(row)
        self._wake.set()
        return stored

    def flush(self, timeout: float = 30.0, *, all_writers: bool = False) -> bool:
        """Wait until everything this writer logged so far (with `all_writers`, everything in
        the buffer folder, such as a dead writer's records) is in PostgreSQL and no feedback
        waits for its search (True), or `timeout` passes (False)."""
        upto = self.wal.position()
        deadline = time.monotonic() + timeout
        while self._waiting(upto, all_writers):
            if time.monotonic() >= deadline:
                return False
            self._retry_at = self._held_due = 0.0  # do not wait for the back-off
            self._wake.set()
            time.sleep(0.05)
        return True

    def _waiting(self, upto: tuple[int, int], all_writers: bool) -> bool:
        if all_writers:
            return self.folder.pending()
        return self.wal.backlog(upto) > 0 or bool(self.folder.held())

    def stats(self) -> dict[str, int]:
        return {
            "written": self.written,
            "transactions": self.transactions,
            "appended": self.wal.appended,  # records this process put on disk
            "buffered": self.wal.backlog(),  # ... and not yet in PostgreSQL
            "buffer_bytes": self.folder.size(),  # the whole folder, every writer's
            "dropped": self.wal.dropped,
            "held": self.held,
            "retried": self.retried,
            "rejected": self.rejected,
        }

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread, release this process's stream and drain once more: a stream
        whose writer is gone is drained to its end and removed (or left for the next)."""
        self._stop.set()
        self._wake.set()
        self._writer.join(timeout)
        self.wal.close()
        self._drain()
        self._export()
        self.pool.close()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the writer thread
    def _run(self) -> None:
        while not self._stop.is_set():
            if self._wake.wait(POLL_S) and not self._stop.is_set():
                time.sleep(GATHER_S)
            self._wake.clear()
            if time.monotonic() >= self._retry_at:
                self._drain()
            self._export()

    def _drain(self) -> None:
        with self.folder.drain_lock() as ours:
            if not ours:
                return  # another process drains (every writer's records) right now
            try:
                self._drain_streams()
                self._retry_held()
                self._retry_delay = RETRY_MIN_S
            except UNAVAILABLE as err:
                self._unavailable(err)
            except Exception:
                log.exception("log-buffer drain failed")
                self._unavailable(None)

    def _drain_streams(self) -> None:
        deadline = time.monotonic() + DRAIN_SLICE_S
        while True:
            batch = self.folder.read(BATCH)
            if batch.records:
                self._write(batch.records)
            self.folder.commit(batch)
            if not batch.records or time.monotonic() > deadline:
                return

    def _unavailable(self, err) -> None:
        if self._retry_delay == RETRY_MIN_S:
            log.warning("PostgreSQL unavailable (%s); logs wait in %s", err, self.folder.folder)
        self._retry_at = time.monotonic() + self._retry_delay
        self._retry_delay = min(RETRY_MAX_S, self._retry_delay * 2)

    def _write(self, rows: list[dict]) -> None:
        """Insert `rows` in order in one transaction; on a content error, row by row, holding
        feedback that waits for its search and rejecting the rest."""
        self._ensure_schema()
        try:
            with self.pool.connection(timeout=WRITE_WAIT_S) as conn:
                self._insert(conn, rows)
            self.written += len(rows)
            self.transactions += 1
            return
        except UNAVAILABLE:
            raise
        except REFUSED:
            pass
        held = []
        for row in rows:
            err = self._insert_one(row)
            if err is not None and _waits_for_search(row, err):
                held.append(row)
            elif err is not None:
                self._reject(row, err)
        if held:
            self.folder.hold(held, time.time())
            self.held += len(held)

    def _insert_one(self, row: dict) -> Exception | None:
        """None once written; the refusal otherwise (unavailability raises)."""
        try:
            with self.pool.connection(timeout=WRITE_WAIT_S) as conn:
                self._insert(conn, [row])
        except UNAVAILABLE:
            raise
        except REFUSED as err:
            return err
        self.written += 1
        self.transactions += 1
        return None

    @staticmethod
    def _insert(conn: psycopg.Connection, rows: list[dict]) -> None:
        """In order; each run of one kind is one ``executemany``, which psycopg pipelines
        (one round trip per run instead of one per row: the ingress writes every search)."""
        with conn.transaction(), conn.cursor() as cur:
            if any(r["type"] == "feedback" for r in rows):
                cur.execute("SELECT pg_advisory_xact_lock_shared(%s)", (FEEDBACK_LOCK,))
            for kind, run in itertools.groupby(map(_current, rows), key=lambda r: r["type"]):
                cur.executemany(INSERT_SEARCH if kind == "search" else INSERT_FEEDBACK, list(run))

    def _retry_held(self) -> None:
        """Feedback held for its search: written once the search is there, rejected once
        `log_feedback_wait_s` has passed without it."""
        if time.monotonic() < self._held_due:
            return
        self._held_due = time.monotonic() + HELD_RETRY_S
        waiting = self.folder.held()
        if not waiting:
            return
        keep: list[dict] = []
        try:
            while waiting:
                err = self._insert_one(waiting[0]["record"])  # unavailable: raises, all kept
                entry = waiting.pop(0)
                if err is None:
                    self.retried += 1
                elif self._still_waiting(entry, err):
                    keep.append(entry)
                else:
                    self._reject(entry["record"], err)
        finally:
            self.folder.replace_held(keep + waiting)

    def _still_waiting(self, entry: dict, err: Exception) -> bool:
        waited = time.time() - float(entry.get("held_since", 0))
        limit = self.settings.log_feedback_wait_s
        return _waits_for_search(entry["record"], err) and waited < limit

    def _reject(self, row: dict, err: Exception) -> None:
        self.rejected += 1
        log.error("PostgreSQL refused a %s record: %s", row.get("type"), err)
        with open(self.rejected_path, "a") as f:
            f.write(json.dumps({"error": str(err).strip(), "record": row}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _ensure_schema(self) -> None:
        if not self.schema.ready:
            with self.pool.connection(timeout=WRITE_WAIT_S) as conn:
                self.schema.ensure(conn)

    # ------------------------------------------------------------------ what it exports
    def _export(self) -> None:
        """Refresh the buffer's size (for the cap) and the metrics; log new drops."""
        size = self.folder.size()
        self.wal.refresh(size)
        self._metrics.buffer_bytes.set(size)
        self._metrics.buffered.set(self.wal.backlog())
        counts = {"dropped": self.wal.dropped, "rejected": self.rejected, "retried": self.retried}
        for name, value in counts.items():
            delta = value - self._exported.get(name, 0)
            if delta > 0:
                getattr(self._metrics, name).inc(delta)
                self._exported[name] = value
                if name == "dropped":
                    log.error("log buffer %s full (%d of %d bytes): dropped %d records",
                              self.folder.folder, size, self.wal.max_bytes, delta)  # fmt: skip
