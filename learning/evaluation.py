"""The learning loop's evaluation sets (dev halves, DL19, logged and untrained slices), scored
per query with :mod:`training.evaluation` for the gate and the simulator's report."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

from learning.splits import dev_split
from training.datasets import load_qrels, load_queries
from training.evaluation.metrics import MRR10, NDCG10, PerQuery, mean, per_query
from training.evaluation.runs import dense_ranking
from training.text import query_key


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
        results[name] = per_query(dense_ranking(Path(version_dir), queries), qrels, measure)
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
