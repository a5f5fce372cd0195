"""The most the simulated users' queries can teach: the loop's fine-tune on their own judgments.

Simulated users ask the simulated dev half, and their clicks are a noisy, partial copy of its
qrels. Giving the fine-tune those qrels instead (every query, its judged passage, and the
passages the live version ranks above it as skip-above negatives) is the best case of any click
log on those queries, so what the held-out half and DL19 do under it bounds what the loop can
lift there. ``--control`` fine-tunes on as many more examples of the original training data
instead, which separates what the labels do from what fine-tuning at all does.

    python -m experiments.oracle [VERSION] [--negatives skip-above|random] [--control]

The learning-loop settings apply (``TWOTOWER_REINFORCE_LR_SCALE`` and the rest). Nothing is
published: the candidate lives in a temporary folder and only its measurement is printed.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from cluster.config import Settings, get_settings
from learning.splits import untrainable_queries
from learning.triplets import Triplet
from training.text import query_key

NEGATIVES = ("skip-above", "random")


def oracle_triplets(
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    ranking: Mapping[str, list[str]],
    *,
    negatives: str = "skip-above",
    per_query: int = 3,
    pool: Sequence[str] = (),
) -> list[Triplet]:
    """(query, judged passage, negative) for every trainable judged query, weight 1.

    ``skip-above``: the passages ``ranking`` shows above the first judged one (none when it is
    at rank 1), as a click on it would give. ``random``: passages of ``pool``, seeded by qid.
    """
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, not {negatives!r}")
    guard = untrainable_queries()
    triplets = []
    for qid, text in queries.items():
        positives = {doc_id for doc_id, rel in qrels.get(qid, {}).items() if rel > 0}
        if not positives or query_key(text) in guard:
            continue
        if negatives == "skip-above":
            shown = ranking.get(qid, [])
            first = min((shown.index(p) for p in positives if p in shown), default=len(shown))
            candidates = [p for p in shown[:first] if p not in positives]
        else:  # two spare draws, in case one is a positive
            sample = random.Random(qid).sample(list(pool), per_query + 2)
            candidates = [p for p in sample if p not in positives]
        for positive in sorted(positives):
            triplets += [Triplet(text, positive, n, 1.0, "oracle") for n in candidates[:per_query]]
    return triplets


def run(
    settings: Settings,
    version: str | None = None,
    *,
    negatives: str = "skip-above",
    per_query: int = 3,
    control: bool = False,
) -> dict:
    """Fine-tune ``version`` (default: LATEST) on the simulated half's judgments (or, with
    ``control``, on as many replayed training examples) and measure it as the simulator does."""
    from cluster.artifacts import ArtifactStore
    from learning.finetune import fine_tune, parent_collection, replay_examples
    from learning.splits import dev_split
    from training import datasets
    from training.evaluation.runs import dense_ranking
    from training.examples import Example
    from twotower.simulate import measure_change

    store = ArtifactStore.from_settings(settings)
    version = version or store.latest()
    if version is None:
        raise ValueError("the store has no LATEST version; name one")
    live_dir = store.download(version)
    collection = parent_collection(live_dir)
    queries = dev_split().simulated
    triplets = oracle_triplets(
        queries,
        datasets.load_qrels("dev"),
        dense_ranking(live_dir, queries) if negatives == "skip-above" else {},
        negatives=negatives,
        per_query=per_query,
        pool=collection.ids,
    )
    if control:
        taught = replay_examples(len(triplets), collection.texts, settings.seed + 1)
    else:
        text = datasets.load_collection().text_of()
        taught = [
            Example(t.query, text[t.positive], text[t.negative], source="oracle") for t in triplets
        ]
    with tempfile.TemporaryDirectory(prefix="twotower-oracle-") as folder:
        candidate = fine_tune(settings, live_dir, taught, Path(folder) / "candidate")
        changes = measure_change(live_dir, candidate)
    return {
        "version": version,
        "taught": "replayed training data (control)" if control else "simulated-half qrels",
        "negatives": negatives,
        "examples": len(taught),
        "queries": len({t.query for t in triplets}),
        "lr_scale": settings.reinforce_lr_scale,
        "passage_lr_scale": settings.reinforce_passage_lr_scale,
        "replay_ratio": settings.reinforce_replay_ratio,
        **changes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.oracle")
    parser.add_argument("version", nargs="?", help="default: the store's LATEST")
    parser.add_argument("--negatives", choices=NEGATIVES, default="skip-above")
    parser.add_argument("--per-query", type=int, default=3)
    parser.add_argument("--control", action="store_true", help="teach replayed training data")
    args = parser.parse_args()
    result = run(
        get_settings(),
        args.version,
        negatives=args.negatives,
        per_query=args.per_query,
        control=args.control,
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
