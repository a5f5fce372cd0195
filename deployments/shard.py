"""IndexShard: one shard of each loaded version's Faiss index, with the text of its passages.

One Serve deployment per shard id (``IndexShard0``, ``IndexShard1``, …); its replicas are
copies of that shard only, so no replica holds more vectors or text than its share. A shard
answers both halves of a search: dense (Faiss inner product) and, for hybrid queries,
lexical (BM25 over the same passages with bm25s; term statistics are per shard, as in
Elasticsearch's default, and near-identical across shards because shards are slices of one
shuffled-enough collection). Hits carry their text, so the ingress needs no passage store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import bm25s
import faiss
import numpy as np
from ray import serve

from cluster.config import get_settings
from cluster.metrics import serving_metrics
from deployments.merge import Hit
from deployments.versions import local_copy
from training.index import BLAS_FROM_QUERIES, load_shard, use_blas_from
from training.text import tokenize

log = logging.getLogger("ray.serve")


@dataclass
class LoadedShard:
    """One version's share of passages: Faiss rows, their pids and texts, and a BM25 index."""

    index: faiss.Index
    pids: np.ndarray
    texts: list[str]
    bm25: bm25s.BM25

    @classmethod
    def load(cls, version_dir, shard_id: int) -> LoadedShard:
        shard = load_shard(version_dir, shard_id, with_texts=True)
        bm25 = bm25s.BM25()
        bm25.index([tokenize(t) or ["<empty>"] for t in shard.texts], show_progress=False)
        return cls(shard.index, shard.pids, shard.texts, bm25)

    def __len__(self) -> int:
        return len(self.pids)

    def dense(self, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        k = min(k, len(self))
        # One Faiss/BLAS thread, set on the calling thread: OpenMP's thread count is a
        # per-thread setting, and Serve (or the bench's workers) may call from any thread.
        faiss.omp_set_num_threads(1)
        use_blas_from(BLAS_FROM_QUERIES, self.index.d)  # a batch streams the vectors once
        scores, rows = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        return [
            [
                (float(s), int(self.pids[r]), self.texts[r])
                for s, r in zip(srow, rrow, strict=True)
                if r >= 0
            ]
            for srow, rrow in zip(scores, rows, strict=True)
        ]

    def lexical(self, query: str, k: int) -> list[Hit]:
        terms = tokenize(query)
        if not terms:
            return []
        scores = self.bm25.get_scores(terms)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((self.pids[top], -scores[top]))]
        return [(float(scores[r]), int(self.pids[r]), self.texts[r]) for r in top if scores[r] > 0]


@serve.deployment(name="IndexShard")
class IndexShardDeployment:
    def __init__(self, shard_id: int) -> None:
        self.shard_id = shard_id
        self.settings = get_settings()
        self.versions: dict[str, LoadedShard] = {}
        self.metrics = serving_metrics()

    async def reconfigure(self, config: dict) -> None:
        """Load this shard of every listed version, then drop the others."""
        wanted = list(config.get("versions", []))
        for version in wanted:
            if version not in self.versions:
                folder = await asyncio.to_thread(local_copy, self.settings, version)
                loaded = await asyncio.to_thread(LoadedShard.load, folder, self.shard_id)
                self.versions[version] = loaded
                self.metrics.index_size.set(
                    len(loaded), tags={"shard": str(self.shard_id), "version": version}
                )
                log.info("IndexShard%d loaded %s: %d passages", self.shard_id, version, len(loaded))
        for version in [v for v in self.versions if v not in wanted]:
            del self.versions[version]
            self.metrics.index_size.set(0, tags={"shard": str(self.shard_id), "version": version})

    def loaded_versions(self) -> list[str]:
        return sorted(self.versions)

    async def search(
        self, version: str, vectors: np.ndarray, k: int, lexical: list[str | None] | None = None
    ) -> tuple[list[list[Hit]], list[list[Hit]]]:
        """(dense hits per query, BM25 hits per query) from this shard, best first.

        ``lexical[i]`` is the query text when query i is hybrid, else None (no BM25 work).
        """
        if version not in self.versions:
            raise LookupError(
                f"IndexShard{self.shard_id}: version {version} is not loaded "
                f"(have {self.loaded_versions()})"
            )
        started = time.perf_counter()
        shard = self.versions[version]
        dense = shard.dense(vectors, k)
        texts = lexical or [None] * len(dense)
        lexical_hits = [shard.lexical(q, k) if q else [] for q in texts]
        self.metrics.shard_search_latency_ms.observe(
            (time.perf_counter() - started) * 1000, tags={"shard": str(self.shard_id)}
        )
        return dense, lexical_hits
