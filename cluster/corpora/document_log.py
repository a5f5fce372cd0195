"""The document log: every document written to a corpus through the API, in PostgreSQL.

A write is acknowledged once its transaction has committed, so an acknowledged document is
never lost; a batch is one transaction, so it is applied whole or not at all. Writers hold
``WRITE_LOCK`` for their transaction, so sequence numbers commit in order: a reader that has
applied everything up to ``seq`` never later finds a new row below it. That makes ``seq`` a
watermark: a shard replica remembers the last one it applied, and a version records the last
one it folded into its index (``documents_watermark`` in its manifest) and replays the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from cluster.config import Settings
from cluster.corpora.documents import Document
from cluster.logstore.migrate import Schema

WRITE_LOCK = 0x7477_646F  # "twdo": serialises document writers (see the module docstring)
CONNECT_TIMEOUT_S = 3

APPEND = """
INSERT INTO document_log (corpus, doc_id, op, body, vector, vector_version)
VALUES (%s, %s, %s, %s::jsonb, %s, %s)
RETURNING seq
"""
SINCE = """
SELECT seq, doc_id, op, body, created_at, vector, vector_version FROM document_log
 WHERE corpus = %s AND seq > %s AND seq <= %s ORDER BY seq LIMIT %s
"""
LATEST = """
SELECT seq, doc_id, op, body, created_at FROM document_log
 WHERE corpus = %s AND doc_id = %s ORDER BY seq DESC LIMIT 1
"""
PAGE = 10_000  # rows read at a time
HEAD = "SELECT COALESCE(max(seq), 0) FROM document_log WHERE corpus = %s"


@dataclass(frozen=True)
class DocumentOp:
    """One logged write: an upsert carries its document, a delete only the id."""

    seq: int
    doc_id: str
    document: Document | None  # None: deleted
    written_at: datetime | None = None
    vector: np.ndarray | None = None  # the passage vector, as ``vector_version`` encoded it
    vector_version: str | None = None

    @classmethod
    def from_row(cls, row: dict) -> DocumentOp:
        body, raw = row["body"], row.get("vector")
        document = None if row["op"] == "delete" else Document(**body)
        vector = None if raw is None else np.frombuffer(raw, dtype=np.float32)
        return cls(
            int(row["seq"]), row["doc_id"], document, row.get("created_at"),
            vector, row.get("vector_version"),
        )  # fmt: skip


class DocumentLog:
    def __init__(self, settings: Settings, max_size: int = 2):
        self.pool = ConnectionPool(
            settings.dsn,
            min_size=1,
            max_size=max(1, max_size),
            timeout=5,
            open=True,  # without waiting: PostgreSQL may be down, reads then fail clearly
            check=ConnectionPool.check_connection,
            kwargs={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "twotower-docs"},
            name="twotower-documents",
        )
        self.schema = Schema()

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> DocumentLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        with self.pool.connection() as conn:
            self.schema.ensure(conn)
            yield conn

    # ------------------------------------------------------------------ writing
    def write(
        self,
        corpus: str,
        upserts: list[Document],
        deletes: list[str] = (),
        vectors: np.ndarray | None = None,
        version: str | None = None,
    ) -> int:
        """Log the upserts (with their passage vectors under ``version``, when given), then the
        deletes, in one transaction; returns the last seq."""
        if not upserts and not deletes:
            raise ValueError("nothing to write")
        rows = [
            (
                corpus, d.id, "upsert", json.dumps(_body(d), ensure_ascii=False),
                None if vectors is None else np.asarray(vectors[i], dtype=np.float32).tobytes(),
                None if vectors is None else version,
            )
            for i, d in enumerate(upserts)
        ]  # fmt: skip
        rows += [(corpus, doc_id, "delete", None, None, None) for doc_id in deletes]
        with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            last = 0
            for row in rows:
                last = cur.execute(APPEND, row).fetchone()[0]
        return int(last)

    # ------------------------------------------------------------------ reading
    def head(self, corpus: str) -> int:
        """The last seq written to ``corpus`` (0: none). Taking the write lock shared would
        not help: a committed seq is final, and later ones are always larger."""
        with self._connection() as conn:
            return int(conn.execute(HEAD, (corpus,)).fetchone()[0])

    def since(
        self, corpus: str, after: int, upto: int | None = None, limit: int = PAGE
    ) -> list[DocumentOp]:
        """Writes with ``after < seq <= upto`` (no upper bound by default), oldest first."""
        upto = 2**62 if upto is None else upto
        with self._connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            rows = cur.execute(SINCE, (corpus, after, upto, limit)).fetchall()
        return [DocumentOp.from_row(r) for r in rows]

    def replay(self, corpus: str, after: int, upto: int | None = None) -> Iterator[DocumentOp]:
        """Every write after ``after`` (up to ``upto``), in pages, oldest first."""
        while True:
            page = self.since(corpus, after, upto)
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1].seq

    def latest(self, corpus: str, doc_id: str) -> DocumentOp | None:
        """The last write of one document, or None when the API never wrote it."""
        with self._connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            row = cur.execute(LATEST, (corpus, doc_id)).fetchone()
        return None if row is None else DocumentOp.from_row(row)


def _body(doc: Document) -> dict:
    return json.loads(doc.to_json())
