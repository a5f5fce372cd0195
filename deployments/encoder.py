"""QueryEncoder: the query tower of every loaded version, behind Serve's dynamic batching.

A replica holds one :class:`training.model.QueryEncoder` per version named in its
``user_config`` (``{"versions": [...], "max_batch_size": n, "batch_wait_timeout_s": s}``), so
a rollout can load the next version before any request needs it (docs/serving.md, "Versions
and rollouts").
Requests name their version; a batch is split by version and each part goes through its own
tower in one forward pass. Batch size and wait change at run time through ``user_config``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import numpy as np
import torch
from ray import serve

from cluster.config import get_settings
from cluster.metrics import serving_metrics
from cluster.ray_connection import keep_replica_grpc_on_loopback
from deployments.versions import local_copy
from training.model import PassageEncoder, QueryEncoder

log = logging.getLogger("ray.serve")


def _queries_in(items: list[tuple[str, list[str]]]) -> int:
    return sum(len(queries) for _, queries in items)


class UnknownVersion(LookupError):
    """A request named a version this replica has not loaded (a rollout protocol breach)."""


@serve.deployment(name="QueryEncoder")
class QueryEncoderDeployment:
    def __init__(self) -> None:
        keep_replica_grpc_on_loopback()
        torch.set_num_threads(1)  # one core per replica: replicas, not threads, add throughput
        self.settings = get_settings()
        self.encoders: dict[str, QueryEncoder] = {}
        self.passage_encoders: dict[str, PassageEncoder] = {}  # loaded when first asked
        self.metrics = serving_metrics()
        self.max_batch_size = self.settings.encoder_batch_size

    async def reconfigure(self, config: dict) -> None:
        """Load every listed version (off the event loop), then drop the others."""
        wanted = list(config.get("versions", []))
        for version in wanted:
            if version not in self.encoders:
                folder = await asyncio.to_thread(local_copy, self.settings, version)
                self.encoders[version] = await asyncio.to_thread(QueryEncoder.load, folder)
                log.info("QueryEncoder loaded version %s", version)
        for version in [v for v in self.encoders if v not in wanted]:
            del self.encoders[version]
            self.passage_encoders.pop(version, None)
            log.info("QueryEncoder unloaded version %s", version)
        self.max_batch_size = int(config.get("max_batch_size", self.settings.encoder_batch_size))
        self._encode_batch.set_max_batch_size(self.max_batch_size)
        self._encode_batch.set_batch_wait_timeout_s(
            float(config.get("batch_wait_timeout_s", self.settings.encoder_batch_wait_s))
        )

    def loaded_versions(self) -> list[str]:
        return sorted(self.encoders)

    async def encode(self, version: str, queries: list[str]) -> np.ndarray:
        """Vectors (len(queries), dim) of ``version``'s query tower, L2-normalised."""
        if version not in self.encoders:
            raise UnknownVersion(f"version {version} is not loaded (have {self.loaded_versions()})")
        size = self.max_batch_size
        chunks = [queries[i : i + size] for i in range(0, len(queries), size)]
        parts = await asyncio.gather(*(self._encode_batch((version, c)) for c in chunks))
        return np.concatenate(parts)

    async def encode_passages(self, version: str, texts: list[str]) -> np.ndarray:
        """Vectors of documents written through the API, by ``version``'s passage tower (as
        its index encoded the rest); the shards ask, off the search path."""
        if version not in self.encoders:
            raise UnknownVersion(f"version {version} is not loaded (have {self.loaded_versions()})")
        if version not in self.passage_encoders:
            folder = await asyncio.to_thread(local_copy, self.settings, version)
            self.passage_encoders[version] = await asyncio.to_thread(PassageEncoder.load, folder)
        return await asyncio.to_thread(self.passage_encoders[version].encode, texts)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0, batch_size_fn=_queries_in)
    async def _encode_batch(self, items: list[tuple[str, list[str]]]) -> list[np.ndarray]:
        by_version: dict[str, list[int]] = defaultdict(list)
        for i, (version, _) in enumerate(items):
            by_version[version].append(i)
        out: list[np.ndarray | None] = [None] * len(items)
        for version, rows in by_version.items():
            texts = [q for i in rows for q in items[i][1]]
            self.metrics.encoder_batch_size.observe(len(texts))
            vectors = await asyncio.to_thread(self.encoders[version].encode, texts)
            start = 0
            for i in rows:
                count = len(items[i][1])
                out[i] = vectors[start : start + count]
                start += count
        return out
