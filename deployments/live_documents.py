"""Documents written while a version serves: one shard replica's overlay on its base index.

A version's shards index its corpus as it was when the version was built (up to its
``documents_watermark``). Every later write in the document log is applied here, in seq order:

- any written id is *stale* in the base: its base row never answers again (the write replaced
  or deleted it);
- an upsert whose id hashes to this shard (:func:`shard_of`) joins the overlay, a small exact
  index (and a BM25 over its texts) searched beside the base; a delete leaves it.

So every document lives on exactly one shard, a delete disappears everywhere, and a restarted
replica, or a newly rolled-out version, replays the log from its watermark to the same state.
The overlay's BM25 has its own term statistics: its lexical scores are close to, not exactly,
what a rebuilt shard would give (hybrid fusion normalises each list's scores anyway). It
catches up with new writes at most once a second, so a write is found by its words within
about a second more than by its meaning.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import bm25s
import faiss
import numpy as np

from cluster.corpora.document_log import DocumentOp
from deployments.merge import Hit
from training.text import tokenize

COMPACT_FROM = 256  # dead rows tolerated before a compaction, whatever the live count
BM25_EVERY_S = 1.0  # at most one rebuild of the overlay's BM25 a second


def shard_of(doc_id: str, num_shards: int) -> int:
    """The shard a written document lives on: a stable hash of its id."""
    digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


@dataclass
class Overlay:
    """Rows are only ever appended (a faiss add per write); a replaced or deleted document's
    old row is marked dead and skipped, and the rows are compacted once the dead outnumber
    the live. The BM25 over the rows is rebuilt at most every ``BM25_EVERY_S`` (when a
    lexical search finds it behind), so a stream of writes does not rebuild it every poll."""

    shard_id: int
    num_shards: int
    applied: int  # the last seq applied
    stale: set[str] = field(default_factory=set)  # written since the version was built
    rows: dict[str, int] = field(default_factory=dict)  # doc_id -> its live row
    _ids: list[str] = field(default_factory=list)
    _texts: list[str] = field(default_factory=list)
    _vectors: list[np.ndarray] = field(default_factory=list)
    _live: list[bool] = field(default_factory=list)
    _index: faiss.IndexFlatIP | None = None
    _bm25: bm25s.BM25 | None = None
    _bm25_rows: int = 0  # rows the BM25 covers
    _bm25_at: float = 0.0

    def needs_vectors(self, ops: list[DocumentOp]) -> list[DocumentOp]:
        """The upserts among ``ops`` that land on this shard (they need a passage vector)."""
        return [
            op
            for op in ops
            if op.document is not None and shard_of(op.doc_id, self.num_shards) == self.shard_id
        ]

    def apply(self, ops: list[DocumentOp], vectors: dict[int, np.ndarray]) -> None:
        """Apply ``ops`` in order; ``vectors[seq]`` is the vector of each upsert this shard
        holds (from :meth:`needs_vectors`)."""
        for op in ops:
            if op.seq <= self.applied:
                continue  # a replay of what is already here
            self.stale.add(op.doc_id)
            old = self.rows.pop(op.doc_id, None)
            if old is not None:
                self._live[old] = False
            if op.document is not None and op.seq in vectors:
                self._append(op.doc_id, op.document.passage, vectors[op.seq])
            self.applied = op.seq
        if len(self._ids) - len(self.rows) > max(COMPACT_FROM, len(self.rows)):
            self._compact()

    def _append(self, doc_id: str, text: str, vector: np.ndarray) -> None:
        vector = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        if self._index is None:
            self._index = faiss.IndexFlatIP(vector.shape[1])
        self._index.add(vector)
        self.rows[doc_id] = len(self._ids)
        self._ids.append(doc_id)
        self._texts.append(text)
        self._vectors.append(vector[0])
        self._live.append(True)

    def _compact(self) -> None:
        kept = [
            (self._ids[r], self._texts[r], self._vectors[r]) for r in sorted(self.rows.values())
        ]
        self.rows, self._ids, self._texts, self._vectors, self._live = {}, [], [], [], []
        self._index, self._bm25, self._bm25_rows = None, None, 0
        for doc_id, text, vector in kept:
            self._append(doc_id, text, vector)

    def text(self, doc_id: str) -> str | None:
        row = self.rows.get(doc_id)
        return None if row is None else self._texts[row]

    def __len__(self) -> int:
        return len(self.rows)

    def dense(self, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        if not self.rows:
            return [[] for _ in range(len(vectors))]
        dead = len(self._ids) - len(self.rows)
        scores, rows = self._index.search(vectors, min(k + dead, len(self._ids)))
        return [
            [
                (float(s), self._ids[r], self._texts[r])
                for s, r in zip(sr, rr, strict=True)
                if r >= 0 and self._live[r]
            ][:k]
            for sr, rr in zip(scores, rows, strict=True)
        ]

    def lexical(self, terms: list[str], k: int) -> list[Hit]:
        if not self.rows or not terms:
            return []
        behind = self._bm25_rows < len(self._ids)
        if behind and (self._bm25 is None or time.monotonic() - self._bm25_at > BM25_EVERY_S):
            self._bm25 = bm25s.BM25()
            self._bm25.index([tokenize(t) or ["<empty>"] for t in self._texts], show_progress=False)
            self._bm25_rows, self._bm25_at = len(self._ids), time.monotonic()
        scores = self._bm25.get_scores(terms)
        top = np.argsort(-scores, kind="stable")
        hits = [
            (float(scores[r]), self._ids[r], self._texts[r])
            for r in top[: k + len(self._ids) - len(self.rows)]
            if scores[r] > 0 and self._live[r]
        ]
        return hits[:k]
