"""The log reader: what the learning loop, the CLI and the ingress's status routes read, plus
the learning loop's own bookkeeping (its runs and its watermark).

It holds one autocommit connection, opened on first use, and no thread or disk buffer: a
process that only reads must never drain the ingress's buffer (two drainers of one folder once
lost a click). Run records are written here, synchronously, because the loop needs their ids
and must fail loudly; only searches and feedback go through the buffered `LogWriter`.

Reads raise psycopg errors when PostgreSQL is down: they serve batch jobs, not searches.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from cluster.config import Settings
from cluster.logstore.migrate import FEEDBACK_LOCK, Schema
from cluster.logstore.records import ResultItem, SearchRecord

DEFAULT_LOOP = "reinforce"
CONNECT_TIMEOUT_S = 3

GET_SEARCH = """
SELECT id, created_at, session_id, client, query, model_version, mode, latency_ms, results
  FROM searches WHERE id = %s::uuid
"""
FEEDBACK_SINCE = """
SELECT f.id, f.event_id, f.search_id, f.doc_id, f.rank, f.kind, f.created_at,
       s.session_id, s.client, s.query, s.model_version, s.mode, s.latency_ms, s.results,
       s.created_at AS searched_at
  FROM feedback f JOIN searches s ON s.id = f.search_id
 WHERE f.id > %(watermark)s
 ORDER BY f.id
 LIMIT %(limit)s
"""
FINISH_RUN = """
UPDATE reinforce_runs SET finished_at = now(), status = %s, reason = %s, candidate_version = %s,
       metrics = %s, events_used = %s, watermark_to = %s
 WHERE id = %s
"""
SET_WATERMARK = """
INSERT INTO loop_state (name, watermark) VALUES (%s, %s)
ON CONFLICT (name) DO UPDATE SET watermark = EXCLUDED.watermark, updated_at = now()
"""


class LogReader:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.schema = Schema()
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()  # the ingress reads from several threads

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        with self._lock:
            conn = self._live_connection()
            self.schema.ensure(conn)
            yield conn

    def _live_connection(self) -> psycopg.Connection:
        """The open connection if it still answers (what a pool checks on checkout), else a
        new one: PostgreSQL may have restarted since the last read."""
        if self._conn is not None and not self._conn.closed:
            try:
                self._conn.execute("")
                return self._conn
            except psycopg.Error:
                self._conn.close()
        self._conn = psycopg.connect(
            self.settings.dsn,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="twotower-logreader",
        )
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ searches and feedback
    def get_search(self, search_id: uuid.UUID | str) -> SearchRecord | None:
        with self._connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            row = cur.execute(GET_SEARCH, (str(search_id),)).fetchone()
        if row is None:
            return None
        row["results"] = [ResultItem(**r) for r in row["results"]]
        return SearchRecord.model_construct(**row)

    def feedback_since(self, watermark: int, limit: int | None = None) -> list[dict[str, Any]]:
        """Feedback with id > watermark, oldest first, each joined with its search. Holding
        FEEDBACK_LOCK exclusively means no row below the last id returned can commit later."""
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (FEEDBACK_LOCK,))
            cur = conn.cursor(row_factory=dict_row)
            return cur.execute(FEEDBACK_SINCE, {"watermark": watermark, "limit": limit}).fetchall()

    def latest_feedback_id(self) -> int:
        with self._connection() as conn:
            return conn.execute("SELECT coalesce(max(id), 0) FROM feedback").fetchone()[0]

    # ------------------------------------------------------------------ the learning loop's runs
    def start_run(
        self, parent_version: str | None = None, watermark_from: int | None = None
    ) -> int:
        with self._connection() as conn:
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
        row = (status, reason, candidate_version, Jsonb(metrics or {}), events_used,
               watermark_to, run_id)  # fmt: skip
        with self._connection() as conn, conn.transaction():
            if conn.execute(FINISH_RUN, row).rowcount != 1:
                raise LookupError(f"no learning-loop run with id {run_id}")
            if watermark_to is not None:
                conn.execute(SET_WATERMARK, (loop, watermark_to))

    def mark_stale_runs(self, reason: str) -> int:
        """Runs still 'running' (their process died) become 'crashed'; returns how many."""
        with self._connection() as conn:
            return conn.execute(
                "UPDATE reinforce_runs SET status = 'crashed', finished_at = now(), reason = %s"
                " WHERE status = 'running'",
                (reason,),
            ).rowcount

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        with self._connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            return cur.execute("SELECT * FROM reinforce_runs WHERE id = %s", (run_id,)).fetchone()

    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent runs, newest first."""
        with self._connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            return cur.execute(
                "SELECT * FROM reinforce_runs ORDER BY started_at DESC, id DESC LIMIT %s", (limit,)
            ).fetchall()

    def get_watermark(self, loop: str = DEFAULT_LOOP) -> int:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT watermark FROM loop_state WHERE name = %s", (loop,)
            ).fetchone()
        return row[0] if row else 0

    def set_watermark(self, watermark: int, loop: str = DEFAULT_LOOP) -> None:
        with self._connection() as conn:
            conn.execute(SET_WATERMARK, (loop, watermark))
