"""Write a complete version folder (docs/training.md, "What a version folder holds") from a
trained model."""

from __future__ import annotations

import json
import time
from pathlib import Path

from training.datasets import Collection
from training.evaluation.metrics import evaluate_run
from training.evaluation.runs import dense_run
from training.index import IndexConfig, build_shards, load_shards
from training.model import TwoTower, encode_texts, save_model
from training.text import Tokenizer

METRICS_FILE = "metrics.json"


def indexed_collection(version_dir: Path) -> Collection:
    """The passages a version indexed, in its order, read from its own shards: the shipped
    collection, a slice of it, or a user's corpus."""
    shards = load_shards(version_dir, with_texts=True)
    return Collection(
        [d for shard in shards for d in shard.ids.tolist()],
        [t for shard in shards for t in shard.texts],
    )


def write_version(
    directory: Path,
    model: TwoTower,
    tokenizer: Tokenizer,
    collection: Collection,
    index_cfg: IndexConfig,
    training_info: dict,
    eval_sets: dict[str, tuple[dict[str, str], dict[str, dict[str, int]]]],
    progress: bool = False,
) -> dict:
    """Save weights + tokenizer + config, encode and shard the collection, evaluate.

    ``eval_sets`` maps a name (dev, dl19, …) to (queries, qrels). Returns the metrics, which
    are also written to metrics.json.
    """
    directory = Path(directory)
    model.eval()
    save_model(directory, model, tokenizer, {**training_info, "index": vars(index_cfg)})
    started = time.time()
    vectors = encode_texts(
        model.embedding,
        model.passage_tower,
        tokenizer,
        collection.texts,
        model.config.max_passage_len,
        progress=progress,
    )
    build_shards(vectors, collection.ids, collection.texts, directory, index_cfg)
    metrics: dict = {"index_seconds": round(time.time() - started, 2), "passages": len(collection)}
    for name, (queries, qrels) in eval_sets.items():
        metrics[name] = evaluate_run(dense_run(directory, queries), qrels)
    (directory / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
