"""Pure functions that turn per-shard hits into one ranking (no Ray, no I/O, easy to test).

A hit is ``(score, pid, text)``. Each shard returns its own top k, best first; the global top k
is among the union of those lists, so merging them by score gives exactly the ranking of one
index over all passages. Ties are broken by pid so the order never depends on shard order.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence

Hit = tuple[float, int, str]
RRF_K = 60  # the usual reciprocal-rank-fusion constant (Cormack et al. 2009)


def _key(hit: Hit) -> tuple[float, int]:
    return (-hit[0], hit[1])


def merge_topk(per_shard: Iterable[Sequence[Hit]], k: int) -> list[Hit]:
    """The best ``k`` hits over all shards' lists, highest score first (ties: smaller pid)."""
    return heapq.nsmallest(k, (hit for hits in per_shard for hit in hits), key=_key)


def rrf_fuse(rankings: Sequence[Sequence[Hit]], k: int, rrf_k: int = RRF_K) -> list[Hit]:
    """Reciprocal rank fusion of several rankings; the fused score replaces the original."""
    scores: dict[int, float] = {}
    texts: dict[int, str] = {}
    for ranking in rankings:
        for rank, (_, pid, text) in enumerate(ranking, 1):
            scores[pid] = scores.get(pid, 0.0) + 1.0 / (rrf_k + rank)
            texts[pid] = text
    fused = [(score, pid, texts[pid]) for pid, score in scores.items()]
    return heapq.nsmallest(k, fused, key=_key)
