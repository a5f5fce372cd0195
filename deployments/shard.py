"""IndexShard: one shard of each loaded version's Faiss index, with the text of its passages.

One Serve deployment per shard id (``IndexShard0``, ``IndexShard1``, …); its replicas are
copies of that shard only, so no replica holds more vectors or text than its share. A shard
answers both halves of a search: dense (Faiss inner product) and, for hybrid queries,
lexical (BM25 over the same passages with bm25s; term statistics are per shard, as in
Elasticsearch's default, and near-identical across shards because shards are slices of one
shuffled-enough collection). Hits carry their text, so the ingress needs no passage store.

Documents written through the API reach every replica from the document log in PostgreSQL,
polled every ``documents_poll_s`` (:mod:`deployments.live_documents`); a replica encodes the
ones it holds with the version's passage tower, through the QueryEncoder deployment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import bm25s
import faiss
import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from cluster.config import get_settings
from cluster.corpora.document_log import DocumentLog, DocumentOp
from cluster.metrics import serving_metrics
from cluster.ray_connection import keep_replica_grpc_on_loopback
from deployments.live_documents import Overlay
from deployments.merge import Hit, merge_topk
from deployments.versions import corpus_of, local_copy
from training.index import BLAS_FROM_QUERIES, load_shard, use_blas_from
from training.text import tokenize

log = logging.getLogger("ray.serve")
LOAD_CATCH_UP_S = 60.0  # how long a loading version waits for the encoder to catch it up
CATCH_UP_PAGE = 2_000  # document-log rows applied at a time
ENCODE_CHUNK = 256  # passages per encoder call


@dataclass
class LoadedShard:
    """One version's share of passages: Faiss rows, their document ids and texts, a BM25
    index, and the documents written through the API since the version was built."""

    index: faiss.Index
    ids: np.ndarray  # object array of str
    texts: list[str]
    bm25: bm25s.BM25
    corpus: str
    overlay: Overlay
    row_of: dict[str, int] = field(default_factory=dict)
    stale_rows: np.ndarray | None = None  # base rows a later write replaced or deleted

    @classmethod
    def load(
        cls, version_dir, shard_id: int, corpus: str = "", watermark: int = 0, num_shards: int = 1
    ) -> LoadedShard:
        shard = load_shard(version_dir, shard_id, with_texts=True)
        bm25 = bm25s.BM25()
        bm25.index([tokenize(t) or ["<empty>"] for t in shard.texts], show_progress=False)
        return cls(
            shard.index, shard.ids, shard.texts, bm25, corpus,
            Overlay(shard_id, num_shards, watermark),
            {d: r for r, d in enumerate(shard.ids.tolist())},
            np.zeros(len(shard.ids), dtype=bool),
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.ids) - int(self.stale_rows.sum()) + len(self.overlay)

    def apply(self, ops: list[DocumentOp], vectors: dict[int, np.ndarray]) -> None:
        """Documents written through the API (:mod:`deployments.live_documents`)."""
        for op in ops:
            row = self.row_of.get(op.doc_id)
            if row is not None:
                self.stale_rows[row] = True
        self.overlay.apply(ops, vectors)

    def get(self, doc_id: str) -> str | None:
        """The passage text of a document this shard holds, or None."""
        text = self.overlay.text(doc_id)
        if text is not None:
            return text
        row = self.row_of.get(doc_id)
        return None if row is None or self.stale_rows[row] else self.texts[row]

    def dense(self, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        stale = int(self.stale_rows.sum())
        want = min(k + stale, len(self.ids))  # enough base rows to fill k after the stale ones
        # One Faiss/BLAS thread, set on the calling thread: OpenMP's thread count is a
        # per-thread setting, and Serve (or the bench's workers) may call from any thread.
        faiss.omp_set_num_threads(1)
        use_blas_from(BLAS_FROM_QUERIES, self.index.d)  # a batch streams the vectors once
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        scores, rows = self.index.search(vectors, want)
        base = [
            [
                (float(s), self.ids[r], self.texts[r])
                for s, r in zip(srow, rrow, strict=True)
                if r >= 0 and not self.stale_rows[r]
            ][:k]
            for srow, rrow in zip(scores, rows, strict=True)
        ]
        if not len(self.overlay):
            return base
        written = self.overlay.dense(vectors, k)
        return [merge_topk([b, w], k) for b, w in zip(base, written, strict=True)]

    def lexical(self, query: str, k: int) -> list[Hit]:
        terms = tokenize(query)
        if not terms:
            return []
        scores = self.bm25.get_scores(terms)
        if self.stale_rows.any():
            scores = np.where(self.stale_rows, 0.0, scores)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = sorted(top, key=lambda r: (-scores[r], self.ids[r]))
        base = [(float(scores[r]), self.ids[r], self.texts[r]) for r in top if scores[r] > 0]
        if not len(self.overlay):
            return base
        return merge_topk([base, self.overlay.lexical(terms, k)], k)


@serve.deployment(name="IndexShard")
class IndexShardDeployment:
    def __init__(self, shard_id: int, encoder: DeploymentHandle) -> None:
        keep_replica_grpc_on_loopback()
        self.shard_id = shard_id
        self.encoder = encoder
        self.settings = get_settings()
        self.versions: dict[str, LoadedShard] = {}
        self.metrics = serving_metrics()
        self.documents = DocumentLog(self.settings, max_size=1)
        self._follower: asyncio.Task | None = None

    async def reconfigure(self, config: dict) -> None:
        """Load this shard of every listed version, caught up with the document log, then
        drop the others."""
        wanted = list(config.get("versions", []))
        for version in wanted:
            if version not in self.versions:
                loaded = await self._load(version)
                self.versions[version] = loaded
                self.metrics.index_size.set(
                    len(loaded), tags={"shard": str(self.shard_id), "version": version}
                )
                log.info("IndexShard%d loaded %s: %d passages", self.shard_id, version, len(loaded))
        for version in [v for v in self.versions if v not in wanted]:
            del self.versions[version]
            self.metrics.index_size.set(0, tags={"shard": str(self.shard_id), "version": version})
        if self._follower is None:
            self._follower = asyncio.get_running_loop().create_task(self._follow())

    async def _load(self, version: str) -> LoadedShard:
        folder = await asyncio.to_thread(local_copy, self.settings, version)
        corpus, watermark = await asyncio.to_thread(corpus_of, self.settings, version)
        loaded = await asyncio.to_thread(
            LoadedShard.load, folder, self.shard_id, corpus, watermark, self.settings.num_shards
        )
        # Not served before it holds every logged write: a rollout never hides a document.
        deadline = time.monotonic() + LOAD_CATCH_UP_S
        while True:
            try:
                await self._catch_up(version, loaded)
                return loaded
            except Exception as err:  # the encoder may not hold the version yet; PG may be down
                if time.monotonic() > deadline:
                    log.warning("IndexShard%d: %s not caught up (%s)", self.shard_id, version, err)
                    return loaded
                await asyncio.sleep(0.5)

    async def _follow(self) -> None:
        """Apply new document writes to every loaded version, every poll interval, forever."""
        while True:
            await asyncio.sleep(self.settings.documents_poll_s)
            for version, shard in list(self.versions.items()):
                try:
                    await self._catch_up(version, shard)
                except Exception as err:  # PostgreSQL down: serve what is here, try again
                    log.warning("IndexShard%d: document log unreadable (%s)", self.shard_id, err)

    async def _catch_up(self, version: str, shard: LoadedShard) -> None:
        while True:
            ops = await asyncio.to_thread(
                self.documents.since, shard.corpus, shard.overlay.applied, None, CATCH_UP_PAGE
            )
            if not ops:
                return
            mine = shard.overlay.needs_vectors(ops)
            # Encoded at the write by this version (the live one then): used as it is.
            vectors = {op.seq: op.vector for op in mine if op.vector_version == version}
            mine = [op for op in mine if op.seq not in vectors]
            for start in range(0, len(mine), ENCODE_CHUNK):
                chunk = mine[start : start + ENCODE_CHUNK]
                encoded = await self.encoder.encode_passages.remote(
                    version, [op.document.passage for op in chunk]
                )
                vectors.update(zip([op.seq for op in chunk], encoded, strict=True))
            shard.apply(ops, vectors)
            now = datetime.now(UTC)
            for op in ops:
                if op.written_at is not None:
                    self.metrics.documents_applied_lag_s.observe(
                        (now - op.written_at).total_seconds(), tags={"shard": str(self.shard_id)}
                    )
            self.metrics.index_size.set(
                len(shard), tags={"shard": str(self.shard_id), "version": version}
            )

    def loaded_versions(self) -> list[str]:
        return sorted(self.versions)

    def get(self, version: str, doc_id: str) -> str | None:
        """The text of ``doc_id`` in this shard of ``version``, or None."""
        return self._shard(version).get(doc_id)

    def _shard(self, version: str) -> LoadedShard:
        if version not in self.versions:
            raise LookupError(
                f"IndexShard{self.shard_id}: version {version} is not loaded "
                f"(have {self.loaded_versions()})"
            )
        return self.versions[version]

    async def search(
        self, version: str, vectors: np.ndarray, k: int, lexical: list[str | None] | None = None
    ) -> tuple[list[list[Hit]], list[list[Hit]]]:
        """(dense hits per query, BM25 hits per query) from this shard, best first.

        ``lexical[i]`` is the query text when query i is hybrid, else None (no BM25 work).
        """
        shard = self._shard(version)
        started = time.perf_counter()
        dense = shard.dense(vectors, k)
        texts = lexical or [None] * len(dense)
        lexical_hits = [shard.lexical(q, k) if q else [] for q in texts]
        self.metrics.shard_search_latency_ms.observe(
            (time.perf_counter() - started) * 1000, tags={"shard": str(self.shard_id)}
        )
        return dense, lexical_hits
