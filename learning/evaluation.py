"""Per-query evaluation of a version directory, for the gate and the simulator's report.

Metrics come from ir-measures; they are kept per query (missing queries score 0) so the
simulator can put a paired bootstrap interval around a change.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping
from pathlib import Path

import ir_measures
from ir_measures import RR, nDCG

from learning.splits import dev_split
from training.datasets import load_qrels, load_queries
from training.text import query_key

MRR10, NDCG10 = RR @ 10, nDCG @ 10
PerQuery = dict[str, float]


def rank(version_dir: Path, queries: Mapping[str, str], k: int = 10) -> dict[str, list[int]]:
    """qid -> top-k pids from the version's own encoder and Faiss shards (what serving does)."""
    from training.index import load_shards, search_shards
    from training.model import QueryEncoder

    qids = list(queries)
    if not qids:
        return {}
    vectors = QueryEncoder.load(Path(version_dir)).encode([queries[q] for q in qids])
    _, pids = search_shards(load_shards(Path(version_dir)), vectors, k)
    return {qid: [int(p) for p in row if p >= 0] for qid, row in zip(qids, pids, strict=True)}


def per_query(
    ranking: Mapping[str, list[int]], qrels: Mapping[str, Mapping[str, int]], measure
) -> PerQuery:
    """One value per judged query; a query the run does not answer scores 0."""
    run = [
        ir_measures.ScoredDoc(qid, str(pid), float(len(pids) - i))
        for qid, pids in ranking.items()
        if qid in qrels
        for i, pid in enumerate(pids)
    ]
    judged = [
        ir_measures.Qrel(qid, str(pid), int(rel))
        for qid, docs in qrels.items()
        for pid, rel in docs.items()
    ]
    values = {qid: 0.0 for qid in qrels}
    for metric in ir_measures.iter_calc([measure], judged, run):
        values[metric.query_id] = float(metric.value)
    return values


def mean(values: PerQuery) -> float:
    return sum(values.values()) / len(values) if values else 0.0


def eval_sets(
    logged_holdout: Mapping[str, set[int]] | None = None,
    trained: Collection[str] | None = None,
) -> dict:
    """name -> (queries, qrels, measure). The dev halves are reported apart so nobody has to
    trust a dev number that includes the queries the simulated users clicked on. Given
    ``trained`` (normalised texts of the queries a fine-tune learned from), "dev_untrained" is
    dev without them: what the gate compares, so a candidate cannot pass on what it memorised."""
    dev_q, dev_qrels = load_queries("dev"), load_qrels("dev")
    split = dev_split()
    sets = {
        "dev": (dev_q, dev_qrels, MRR10),
        "dev_heldout": (split.held_out, _only(dev_qrels, split.held_out), MRR10),
        "dev_simulated": (split.simulated, _only(dev_qrels, split.simulated), MRR10),
        "dl19": (load_queries("dl19"), load_qrels("dl19"), NDCG10),
    }
    if logged_holdout:
        queries = {f"log{i}": q for i, q in enumerate(sorted(logged_holdout))}
        qrels = {qid: {str(p): 1 for p in logged_holdout[q]} for qid, q in queries.items()}
        sets["logged"] = (queries, qrels, MRR10)
    if trained is not None:
        unseen = untrained_dev(trained)
        sets["dev_untrained"] = (unseen, _only(dev_qrels, unseen), MRR10)
    return sets


def untrained_dev(trained: Collection[str]) -> dict[str, str]:
    """qid -> query of the dev queries whose normalised text is not in ``trained``."""
    return {qid: q for qid, q in load_queries("dev").items() if query_key(q) not in trained}


def _only(qrels: Mapping[str, dict], queries: Mapping[str, str]) -> dict[str, dict]:
    return {qid: qrels[qid] for qid in queries if qid in qrels}


def evaluate_per_query(
    version_dir: Path,
    logged_holdout: Mapping[str, set[int]] | None = None,
    trained: Collection[str] | None = None,
) -> dict[str, PerQuery]:
    results = {}
    for name, (queries, qrels, measure) in eval_sets(logged_holdout, trained).items():
        results[name] = per_query(rank(version_dir, queries), qrels, measure)
    return results


def evaluate_for_gate(
    version_dir: Path,
    logged_holdout: Mapping[str, set[int]] | None,
    trained: Collection[str],
) -> dict[str, dict[str, float]]:
    """{set: {metric: mean}}, named like the model's metrics.json (MRR@10, nDCG@10), with
    "dev_untrained" (dev without the ``trained`` queries) for the gate."""
    measures = {
        name: "nDCG@10" if m == NDCG10 else "MRR@10"
        for name, (_, _, m) in eval_sets(logged_holdout, trained).items()
    }
    return {
        name: {measures[name]: round(mean(values), 6)}
        for name, values in evaluate_per_query(version_dir, logged_holdout, trained).items()
    }


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
