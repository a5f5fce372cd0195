"""Pure functions that turn per-shard hits into one ranking (no Ray, no I/O, easy to test).

A hit is ``(score, pid, text)``. Each shard returns its own top k, best first; the global top k
is among the union of those lists, so merging them by score gives exactly the ranking of one
index over all passages. Ties are broken by pid so the order never depends on shard order.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence

from training.fusion import score_fusion

Hit = tuple[float, int, str]


def _key(hit: Hit) -> tuple[float, int]:
    return (-hit[0], hit[1])


def merge_topk(per_shard: Iterable[Sequence[Hit]], k: int) -> list[Hit]:
    """The best ``k`` hits over all shards' lists, highest score first (ties: smaller pid)."""
    return heapq.nsmallest(k, (hit for hits in per_shard for hit in hits), key=_key)


def fuse_hits(
    dense: Sequence[Hit], lexical: Sequence[Hit], dense_weight: float, k: int
) -> list[Hit]:
    """The hybrid ranking of a dense and a BM25 list (:func:`training.fusion.score_fusion`);
    the fused score replaces the original."""
    texts = {pid: text for _, pid, text in (*dense, *lexical)}
    scores = score_fusion(
        {pid: s for s, pid, _ in dense}, {pid: s for s, pid, _ in lexical}, dense_weight
    )
    return heapq.nsmallest(k, ((s, pid, texts[pid]) for pid, s in scores.items()), key=_key)
