"""The click memory in PostgreSQL: the click prior (click_prior.py) folded from the feedback
stream, and what every ingress replica reads of it (docs/click-memory.md).

Three tables (migration 0005): ``click_memory_sessions``, each session's running value per
(query key, document); ``click_memory``, the prior of each (query key, document) with a
``seq`` that grows on every change; ``click_memory_counts``, the events folded and ignored.
The fold's watermark is the ``click_memory`` row of ``loop_state``.

Any process may call :meth:`ClickMemoryStore.fold`: the one that gets the advisory lock folds
the feedback past the watermark, in id order, and moves the watermark in the same commit as the
rows it changed, so a fold that dies is simply done again. Feedback is read under the feedback
lock (migrate.py) held exclusively, so no row below the watermark can commit later. Every
reader polls :meth:`ClickMemoryStore.changes_since` into a :class:`ClickMemoryCache`.

Query text becomes a key through the function the caller passes (``training.text.query_key``,
the one normalisation): this floor may not import it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import dict_row

from cluster.config import Settings
from cluster.logstore.click_prior import (
    IGNORED_REASONS,
    Prior,
    PriorFold,
    PriorParams,
    SessionEvidence,
    SessionKey,
    click_event,
)
from cluster.logstore.migrate import FEEDBACK_LOCK, Schema

CLICK_MEMORY_LOCK = 0x7477_636D  # "twcm": one folder at a time, whichever process it is
WATERMARK = "click_memory"  # its row in loop_state
FOLD_BATCH = 2_000  # feedback rows per fold transaction
FOLD_SLICE_S = 2.0  # a fold stops taking new batches after this long (the rest: next call)
PRUNE_HALF_LIVES = 10  # a session silent this long weighs < 0.1 %: its row is deleted
CHANGES_PAGE = 10_000
CONNECT_TIMEOUT_S = 3

READ_FEEDBACK = """
SELECT f.id, f.search_id, f.doc_id, f.kind, f.created_at,
       s.session_id, s.client, s.query, s.results
  FROM feedback f JOIN searches s ON s.id = f.search_id
 WHERE f.id > %(watermark)s
 ORDER BY f.id
 LIMIT %(limit)s
"""
LOAD_SESSIONS = """
SELECT m.query_key, m.doc_id, m.session, m.client, m.evidence, m.as_of, m.events
  FROM click_memory_sessions m
  JOIN unnest(%(q)s::text[], %(d)s::text[], %(s)s::text[]) AS t (q, d, s)
    ON m.query_key = t.q AND m.doc_id = t.d AND m.session = t.s
UNION
SELECT m.query_key, m.doc_id, m.session, m.client, m.evidence, m.as_of, m.events
  FROM click_memory_sessions m
  JOIN unnest(%(q)s::text[], %(d)s::text[], %(c)s::text[]) AS t (q, d, c)
    ON m.query_key = t.q AND m.doc_id = t.d AND m.client = t.c
"""
SAVE_SESSION = """
INSERT INTO click_memory_sessions (query_key, doc_id, session, client, evidence, as_of, events)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (query_key, doc_id, session) DO UPDATE
   SET evidence = EXCLUDED.evidence, as_of = EXCLUDED.as_of, events = EXCLUDED.events
"""
PRUNE = """
DELETE FROM click_memory_sessions WHERE as_of < %s RETURNING query_key, doc_id
"""
# The prior of every touched (query, document), its sessions decayed to the latest one's time;
# one left without sessions keeps a row with 0 sessions, so readers learn that it is gone.
REFRESH_PRIORS = """
WITH touched AS (
    SELECT DISTINCT q AS query_key, d AS doc_id
      FROM unnest(%(q)s::text[], %(d)s::text[]) AS t (q, d)
), latest AS (
    SELECT s.query_key, s.doc_id, max(s.as_of) AS as_of
      FROM click_memory_sessions s JOIN touched USING (query_key, doc_id)
     GROUP BY s.query_key, s.doc_id
), fresh AS (
    SELECT s.query_key, s.doc_id, l.as_of, count(*)::integer AS sessions,
           sum(s.evidence * power(0.5::float8,
               extract(epoch FROM l.as_of - s.as_of)::float8 / %(half_life)s)) AS evidence
      FROM click_memory_sessions s JOIN latest l USING (query_key, doc_id)
     GROUP BY s.query_key, s.doc_id, l.as_of
)
INSERT INTO click_memory (query_key, doc_id, evidence, sessions, as_of, seq)
SELECT t.query_key, t.doc_id, coalesce(f.evidence, 0), coalesce(f.sessions, 0),
       coalesce(f.as_of, now()), nextval('click_memory_seq')
  FROM touched t LEFT JOIN fresh f USING (query_key, doc_id)
ON CONFLICT (query_key, doc_id) DO UPDATE
   SET evidence = EXCLUDED.evidence, sessions = EXCLUDED.sessions, as_of = EXCLUDED.as_of,
       seq = EXCLUDED.seq
"""
ADD_COUNT = """
INSERT INTO click_memory_counts (name, events) VALUES (%s, %s)
ON CONFLICT (name) DO UPDATE SET events = click_memory_counts.events + EXCLUDED.events
"""
SET_WATERMARK = """
INSERT INTO loop_state (name, watermark) VALUES (%s, %s)
ON CONFLICT (name) DO UPDATE SET watermark = EXCLUDED.watermark, updated_at = now()
"""
CHANGES = """
SELECT query_key, doc_id, evidence, sessions, as_of, seq
  FROM click_memory WHERE seq > %s ORDER BY seq LIMIT %s
"""


class PriorRow(NamedTuple):
    """One changed (query, document) of the ``click_memory`` table."""

    query_key: str
    doc_id: str
    evidence: float
    sessions: int
    as_of: datetime
    seq: int


@dataclass
class FoldResult:
    """What one :meth:`ClickMemoryStore.fold` did (all zero: nothing new)."""

    folded: int = 0
    ignored: Counter[str] = field(default_factory=Counter)
    priors_changed: int = 0
    watermark: int = 0


class ClickMemoryStore:
    """The click memory's SQL: the fold, the readers' change feed, the counts. One autocommit
    connection, opened on first use; calls raise psycopg errors while PostgreSQL is down."""

    def __init__(self, settings: Settings, key: Callable[[str], str]):
        self.settings = settings
        self.key = key
        self.params = PriorParams.from_settings(settings)
        self.schema = Schema()
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        with self._lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = psycopg.connect(
                    self.settings.dsn,
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    application_name="twotower-clickmemory",
                )
            self.schema.ensure(self._conn)
            yield self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    def __enter__(self) -> ClickMemoryStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the fold
    def fold(self, now: datetime | None = None) -> FoldResult | None:
        """Fold the feedback past the watermark (for up to FOLD_SLICE_S); None when another
        process holds the fold's lock (it is folding the same feedback)."""
        with self._connection() as conn:
            locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (CLICK_MEMORY_LOCK,))
            if not locked.fetchone()[0]:
                return None
            try:
                return self._fold_locked(conn, now)
            finally:
                if not conn.broken:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (CLICK_MEMORY_LOCK,))

    def _fold_locked(self, conn: psycopg.Connection, now: datetime | None) -> FoldResult:
        result = FoldResult(watermark=self._watermark(conn))
        deadline = time.monotonic() + FOLD_SLICE_S
        while True:
            rows = self._read_feedback(conn, result.watermark)
            self._fold_batch(conn, rows, now or datetime.now(UTC), result)
            if len(rows) < FOLD_BATCH or time.monotonic() > deadline:
                return result

    @staticmethod
    def _watermark(conn: psycopg.Connection) -> int:
        row = conn.execute("SELECT watermark FROM loop_state WHERE name = %s", (WATERMARK,))
        found = row.fetchone()
        return found[0] if found else 0

    @staticmethod
    def _read_feedback(conn: psycopg.Connection, watermark: int) -> list[dict[str, Any]]:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (FEEDBACK_LOCK,))
            cur = conn.cursor(row_factory=dict_row)
            params = {"watermark": watermark, "limit": FOLD_BATCH}
            return cur.execute(READ_FEEDBACK, params).fetchall()

    def _fold_batch(
        self, conn: psycopg.Connection, rows: list[dict], now: datetime, result: FoldResult
    ) -> None:
        """One transaction: prune silent sessions, fold ``rows``, refresh the priors they
        touched, add to the counts and move the watermark."""
        events = [click_event(row, self.key) for row in rows]
        horizon = now - timedelta(seconds=PRUNE_HALF_LIVES * self.params.half_life_s)
        with conn.transaction():
            touched = set(conn.execute(PRUNE, (horizon,)).fetchall())
            fold = PriorFold(self.params, self._load_sessions(conn, events))
            for event in events:
                fold.add(event)
            changed = [_session_row(key, fold.sessions[key]) for key in fold.changed]
            with conn.cursor() as cur:
                cur.executemany(SAVE_SESSION, changed)
            touched |= {(q, d) for q, d, _ in fold.changed}
            if touched:
                q, d = zip(*touched, strict=True)
                conn.execute(REFRESH_PRIORS, {"q": list(q), "d": list(d),
                                              "half_life": self.params.half_life_s})  # fmt: skip
            counts = {"folded": fold.folded, **fold.ignored}
            for name, n in counts.items():
                if n:
                    conn.execute(ADD_COUNT, (name, n))
            if rows:
                result.watermark = rows[-1]["id"]
                conn.execute(SET_WATERMARK, (WATERMARK, result.watermark))
        result.folded += fold.folded
        result.ignored.update(fold.ignored)
        result.priors_changed += len(touched)

    @staticmethod
    def _load_sessions(conn, events) -> dict[SessionKey, SessionEvidence]:
        """Every stored session of the events' (query, document, session) and of their
        (query, document, client): what the fold and its client limit need."""
        if not events:
            return {}
        params = {
            "q": [e.query_key for e in events],
            "d": [e.doc_id for e in events],
            "s": [e.session for e in events],
            "c": [e.client for e in events],
        }
        return {
            (q, d, s): SessionEvidence(client, evidence, as_of, n)
            for q, d, s, client, evidence, as_of, n in conn.execute(LOAD_SESSIONS, params)
        }

    # ------------------------------------------------------------------ what readers read
    def changes_since(self, seq: int, limit: int = CHANGES_PAGE) -> list[PriorRow]:
        """Priors changed after ``seq``, in seq order (one folder commits them in order)."""
        with self._connection() as conn:
            return [PriorRow(*row) for row in conn.execute(CHANGES, (seq, limit))]

    def counts(self) -> dict[str, Any]:
        """The memory's totals: events folded and ignored (by reason), and the watermark."""
        with self._connection() as conn:
            counts = dict(conn.execute("SELECT name, events FROM click_memory_counts").fetchall())
            state = conn.execute(
                "SELECT watermark, updated_at FROM loop_state WHERE name = %s", (WATERMARK,)
            ).fetchone()
        watermark, updated_at = state or (0, None)
        return {
            "folded": counts.get("folded", 0),
            "ignored": {reason: counts.get(reason, 0) for reason in IGNORED_REASONS},
            "watermark": watermark,
            "folded_at": updated_at,
        }


def _session_row(key: SessionKey, state: SessionEvidence) -> tuple:
    return (*key, state.client, state.evidence, state.as_of, state.events)


class ClickMemoryCache:
    """One process's copy of the priors that can act (at least ``min_sessions`` sessions),
    kept current from :meth:`ClickMemoryStore.changes_since`. Not thread-safe: one thread
    applies changes and looks priors up (the ingress: its event loop)."""

    def __init__(self, min_sessions: int, half_life_s: float):
        self.min_sessions = min_sessions
        self.half_life_s = half_life_s
        self.seq = 0
        self.priors: dict[str, dict[str, Prior]] = {}

    def apply(self, rows: Iterable[PriorRow]) -> None:
        for row in rows:
            self.seq = max(self.seq, row.seq)
            docs = self.priors.get(row.query_key, {})
            if row.sessions >= self.min_sessions:
                docs = {**docs, row.doc_id: Prior(row.evidence, row.sessions, row.as_of)}
            elif row.doc_id in docs:
                docs = {d: p for d, p in docs.items() if d != row.doc_id}
            if docs:
                self.priors[row.query_key] = docs
            else:
                self.priors.pop(row.query_key, None)

    def lookup(self, query_key: str, now: datetime) -> dict[str, Prior]:
        """doc_id -> prior decayed to ``now``, for the documents of this query that can act."""
        docs = self.priors.get(query_key)
        if not docs:
            return {}
        return {doc_id: prior.at(now, self.half_life_s) for doc_id, prior in docs.items()}

    def queries(self) -> int:
        """How many queries the memory can move now."""
        return len(self.priors)

    def documents(self) -> int:
        return sum(len(docs) for docs in self.priors.values())
