"""Per-query evaluation of a real (tiny) version folder through its own encoder and shards."""

from __future__ import annotations

from learning.evaluation import evaluate_for_gate, evaluate_per_query
from learning.splits import dev_split
from training.datasets import load_queries
from training.evaluation.runs import dense_ranking
from training.text import query_key


def test_gate_metrics_of_a_real_version(tiny_version_dir):
    queries = {"a": "what is a cat", "b": "how to cook rice"}
    top = dense_ranking(tiny_version_dir, queries, k=10)
    assert all(len(pids) == 10 for pids in top.values())
    # Logged qrels: the version's own top hit for one query, its 10th for the other.
    holdout = {"what is a cat": {top["a"][0]}, "how to cook rice": {top["b"][9]}}
    metrics = evaluate_for_gate(tiny_version_dir, holdout, trained=())
    assert metrics["logged"]["MRR@10"] == (1.0 + 0.1) / 2
    assert set(metrics) == {
        "dev",
        "dev_heldout",
        "dev_simulated",
        "dl19",
        "logged",
        "dev_untrained",
    }
    assert metrics["dev_untrained"] == metrics["dev"]  # nothing trained: all of dev
    assert 0.0 < metrics["dev"]["MRR@10"] <= 1.0
    assert 0.0 <= metrics["dl19"]["nDCG@10"] <= 1.0

    per_query = evaluate_per_query(tiny_version_dir)
    assert set(per_query["dev_heldout"]) == set(dev_split().held_out)
    halves = len(per_query["dev_heldout"]) + len(per_query["dev_simulated"])
    assert halves == len(per_query["dev"])


def test_the_gate_leaves_the_queries_a_run_trained_on_out_of_dev(tiny_version_dir):
    """Simulated users ask dev queries; a candidate that memorised them must not look better
    on dev for it."""
    dev = evaluate_per_query(tiny_version_dir)["dev"]
    queries = load_queries("dev")
    trained = [query_key(queries[qid]) for qid in sorted(dev)[:5]]

    gated = evaluate_per_query(tiny_version_dir, trained=trained)

    assert set(gated["dev_untrained"]) == set(dev) - set(sorted(dev)[:5])
    assert all(gated["dev_untrained"][qid] == dev[qid] for qid in gated["dev_untrained"])
    assert gated["dev"] == dev  # the reported sets stay whole
    assert set(gated["dev_simulated"]) == set(dev_split().simulated)
