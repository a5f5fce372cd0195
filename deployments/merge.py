"""Pure functions that turn per-shard hits into one ranking (no Ray, no I/O, easy to test).

A hit is ``(score, doc_id, text)``. Each shard returns its own top k, best first; the global
top k is among the union of those lists, so merging them by score gives exactly the ranking of
one index over all passages. Ties are broken by doc_id so the order never depends on shard
order.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence

from training.fusion import score_fusion

Hit = tuple[float, str, str]


def _key(hit: Hit) -> tuple[float, str]:
    return (-hit[0], hit[1])


def merge_topk(per_shard: Iterable[Sequence[Hit]], k: int) -> list[Hit]:
    """The best ``k`` hits over all shards' lists, highest score first (ties: smaller doc_id)."""
    return heapq.nsmallest(k, (hit for hits in per_shard for hit in hits), key=_key)


def fuse_hits(
    dense: Sequence[Hit], lexical: Sequence[Hit], dense_weight: float, k: int
) -> list[Hit]:
    """The hybrid ranking of a dense and a BM25 list (:func:`training.fusion.score_fusion`);
    the fused score replaces the original."""
    texts = {doc_id: text for _, doc_id, text in (*dense, *lexical)}
    scores = score_fusion({d: s for s, d, _ in dense}, {d: s for s, d, _ in lexical}, dense_weight)
    return heapq.nsmallest(k, ((s, d, texts[d]) for d, s in scores.items()), key=_key)
