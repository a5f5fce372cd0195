"""What users will ask next, for the gate: a version's traffic-weighted MRR@10 on the held-out
day the simulator stored (learning/traffic.py), with and without the click memory.

The memory is judged like a model: the same ranking, the same day, once as the version alone
and once re-ranked by the priors the memory holds now (deployments/click_memory.py's blend).
Rankings are dense, as the gate's other figures are, so a candidate and the live version are
compared on what the model does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from cluster.config import Settings
from cluster.logstore.click_memory import ClickMemoryCache, ClickMemoryStore
from cluster.logstore.click_prior import Prior
from deployments.click_memory import rerank
from deployments.merge import Hit
from learning.traffic import TrafficDay, traffic_weighted_mrr
from training.evaluation.runs import dense_search
from training.text import query_key

K = 10
Priors = Callable[[str], Mapping[str, Prior]]  # query text -> doc_id -> prior


def memory_priors(settings: Settings) -> Priors:
    """The click memory's priors as every ingress replica holds them now."""
    cache = ClickMemoryCache(settings.click_memory_min_sessions, settings.click_memory_half_life_s)
    with ClickMemoryStore(settings, query_key) as store:
        while rows := store.changes_since(cache.seq):
            cache.apply(rows)
    now = datetime.now(UTC)
    return lambda query: cache.lookup(query_key(query), now)


def traffic_metrics(
    version_dir: Path, day: TrafficDay, settings: Settings, priors: Priors | None = None
) -> dict[str, dict[str, float]]:
    """{"traffic": {"MRR@10": …}} for the version alone and, given ``priors``,
    {"traffic_memory": {"MRR@10": …}} for the version with the click memory's blend."""
    depth = max(K, settings.click_memory_depth)
    qids, ids, scores = dense_search(Path(version_dir), day.queries, depth)
    hits = {
        qid: [(float(s), str(d), "") for s, d in zip(srow, irow, strict=True) if d is not None]
        for qid, irow, srow in zip(qids, ids, scores, strict=True)
    }
    alone = {qid: [d for _, d, _ in row[:K]] for qid, row in hits.items()}
    out = {"traffic": {"MRR@10": round(traffic_weighted_mrr(alone, day), 6)}}
    if priors is not None:
        blended = blended_ranking(
            hits, day, priors, settings.click_memory_weight, settings.click_memory_min_sessions,
            settings.click_memory_scale,
        )  # fmt: skip
        out["traffic_memory"] = {"MRR@10": round(traffic_weighted_mrr(blended, day), 6)}
    return out


def blended_ranking(
    hits: Mapping[str, list[Hit]],
    day: TrafficDay,
    priors: Priors,
    weight: float,
    min_sessions: int,
    scale: float,
) -> dict[str, list[str]]:
    """qid -> the top K document ids of each of the day's queries, after serving's blend of
    ``priors`` into ``hits`` (qid -> candidates, best first)."""
    return {
        qid: [r.doc_id for r in rerank(hits[qid], priors(query), weight, min_sessions, scale)[:K]]
        for qid, query in day.queries.items()
    }
