"""Metrics with ir-measures: a run in, means (or one value per query) out.

A *run* is ``{qid: {doc_id: score}}`` (strings for ids, as TREC files have them). The four
reported columns are MRR@10, R@10, R@100 and nDCG@10. On graded judgments (TREC DL, 0-3) the
binary measures count rel >= 2 as relevant, the standard for those sets; nDCG uses the grades.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

import ir_measures
from ir_measures import RR, R, nDCG

COLUMNS = ("MRR@10", "R@10", "R@100", "nDCG@10")
MRR10, NDCG10 = RR @ 10, nDCG @ 10
PerQuery = dict[str, float]


def measures_for(qrels: dict[str, dict[str, int]]) -> dict[str, object]:
    graded = any(rel > 1 for docs in qrels.values() for rel in docs.values())
    rel = 2 if graded else 1
    return {
        "MRR@10": RR(rel=rel) @ 10,
        "R@10": R(rel=rel) @ 10,
        "R@100": R(rel=rel) @ 100,
        "nDCG@10": nDCG @ 10,
    }


def evaluate_run(
    run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]
) -> dict[str, float]:
    """Mean of each column over the judged queries (a query with no hits scores 0)."""
    judged = {qid: docs for qid, docs in qrels.items() if any(r > 0 for r in docs.values())}
    if not judged:
        raise ValueError("the qrels hold no relevant judgment")
    measures = measures_for(judged)
    run = {qid: docs for qid, docs in run.items() if qid in judged}
    # ir-measures averages over the judged queries: an unanswered query counts as 0.
    scores = ir_measures.calc_aggregate(list(measures.values()), judged, run)
    return {name: float(scores[m]) for name, m in measures.items()}


def per_query(
    ranking: Mapping[str, list[str]], qrels: Mapping[str, Mapping[str, int]], measure
) -> PerQuery:
    """One value per judged query; a query the ranking does not answer scores 0. Kept per
    query so a change between two versions can get a paired bootstrap interval."""
    run = [
        ir_measures.ScoredDoc(qid, str(doc_id), float(len(ids) - i))
        for qid, ids in ranking.items()
        if qid in qrels
        for i, doc_id in enumerate(ids)
    ]
    judged = [
        ir_measures.Qrel(qid, str(doc_id), int(rel))
        for qid, docs in qrels.items()
        for doc_id, rel in docs.items()
    ]
    values = {qid: 0.0 for qid in qrels}
    for metric in ir_measures.iter_calc([measure], judged, run):
        values[metric.query_id] = float(metric.value)
    return values


def mean(values: PerQuery) -> float:
    return sum(values.values()) / len(values) if values else 0.0


def paired_bootstrap(
    before: PerQuery, after: PerQuery, samples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean change and its 95% interval, resampling queries (paired: same query both sides)."""
    qids = sorted(before)
    if not qids or set(qids) != set(after):
        raise ValueError("paired bootstrap needs the same non-empty query set on both sides")
    diffs = [after[q] - before[q] for q in qids]
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(diffs, k=len(diffs))) / len(diffs) for _ in range(samples))
    return sum(diffs) / len(diffs), means[int(0.025 * samples)], means[int(0.975 * samples) - 1]
