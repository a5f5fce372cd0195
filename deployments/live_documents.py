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
what a rebuilt shard would give (hybrid fusion normalises each list's scores anyway).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import bm25s
import faiss
import numpy as np

from cluster.corpora.document_log import DocumentOp
from deployments.merge import Hit
from training.text import tokenize


def shard_of(doc_id: str, num_shards: int) -> int:
    """The shard a written document lives on: a stable hash of its id."""
    digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


@dataclass
class Overlay:
    shard_id: int
    num_shards: int
    applied: int  # the last seq applied
    stale: set[str] = field(default_factory=set)  # written since the version was built
    docs: dict[str, tuple[np.ndarray, str]] = field(default_factory=dict)  # id -> (vector, text)
    _index: faiss.IndexFlatIP | None = None
    _ids: list[str] = field(default_factory=list)
    _texts: list[str] = field(default_factory=list)
    _bm25: bm25s.BM25 | None = None

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
            if op.document is None:
                self.docs.pop(op.doc_id, None)
            elif op.seq in vectors:
                self.docs[op.doc_id] = (vectors[op.seq], op.document.passage)
            self.applied = op.seq
        self._rebuild()

    def _rebuild(self) -> None:
        self._ids = list(self.docs)
        self._texts = [self.docs[d][1] for d in self._ids]
        self._index, self._bm25 = None, None
        if not self._ids:
            return
        vectors = np.stack([self.docs[d][0] for d in self._ids]).astype(np.float32)
        self._index = faiss.IndexFlatIP(vectors.shape[1])
        self._index.add(vectors)
        self._bm25 = bm25s.BM25()
        self._bm25.index([tokenize(t) or ["<empty>"] for t in self._texts], show_progress=False)

    def __len__(self) -> int:
        return len(self._ids)

    def dense(self, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        if self._index is None:
            return [[] for _ in range(len(vectors))]
        scores, rows = self._index.search(vectors, min(k, len(self._ids)))
        return [
            [(float(s), self._ids[r], self._texts[r]) for s, r in zip(sr, rr, strict=True)]
            for sr, rr in zip(scores, rows, strict=True)
        ]

    def lexical(self, terms: list[str], k: int) -> list[Hit]:
        if self._bm25 is None or not terms:
            return []
        scores = self._bm25.get_scores(terms)
        top = np.argsort(-scores, kind="stable")[:k]
        return [(float(scores[r]), self._ids[r], self._texts[r]) for r in top if scores[r] > 0]
