"""BM25's k1 and b, tuned by grid search on a labelled split: ``python -m experiments.bm25_grid``.

The best pair on dev is what training/bm25.py ships as its defaults."""

from __future__ import annotations

import itertools
import json

from training import datasets
from training.bm25 import BM25Config, BM25Index, analyse
from training.evaluation.metrics import evaluate_run


def tune(
    k1_grid=(0.6, 0.9, 1.2, 1.5), b_grid=(0.3, 0.4, 0.6, 0.75), split: str = "dev"
) -> list[dict]:
    """Every (k1, b) on ``split``; rows sorted best first."""
    collection = datasets.load_collection()
    queries, qrels = datasets.load_queries(split), datasets.load_qrels(split)
    tokens = analyse(collection.texts, show_progress=True)
    rows = []
    for k1, b in itertools.product(k1_grid, b_grid):
        index = BM25Index.from_tokens(collection.ids, tokens, BM25Config(k1=k1, b=b))
        rows.append({"k1": k1, "b": b, **evaluate_run(index.run(queries), qrels)})
        print(json.dumps(rows[-1]), flush=True)
    return sorted(rows, key=lambda r: -r["MRR@10"])


if __name__ == "__main__":
    print("best:", json.dumps(tune()[0]))
