"""Fine-tune the live version on log triplets + replay, on Ray Train, into a candidate folder.

- Starts from the live version's weights and training config (lower learning rate, short
  warm-up: it is a nudge, not a retrain).
- Mixes the weighted log triplets with ``reinforce_replay_ratio`` x as many replayed examples
  of the original training data (MS MARCO train triples and pairs; never an evaluation query),
  so the model does not forget what it knew for the sake of what users clicked this hour.
- Anchors the distillation terms on the parent's own vectors of the replayed examples
  (``reinforce_anchor = "parent"``): unclicked queries are held in place, clicked ones move.
- Trains with the model's ``fit_ray`` (Ray Train ``TorchTrainer``, ``reinforce_workers`` CPU
  DDP workers); checkpoints go to S3 (``s3://<bucket>/ray-train/reinforce-<time>``).
- Re-encodes the parent's passages with the new passage tower into a fresh index, so the
  candidate is a complete version (same layout, same corpus) ready for the gate.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import numpy as np
import torch

from cluster.config import Settings
from cluster.ray_connection import connect
from learning.triplets import LogData
from training import datasets
from training.bm25 import BM25Index
from training.examples import Example, ExampleSet
from training.index import IndexConfig, read_index_meta
from training.model import encode_texts, load_model, read_config
from training.teacher import TeacherCache
from training.text import query_key
from training.train import TrainConfig, fit_ray
from training.version import indexed_collection, write_version

log = logging.getLogger(__name__)


def log_examples(data: LogData, texts: dict[str, str]) -> list[Example]:
    """Triplet document ids -> texts; a document missing from the corpus is skipped (and
    counted)."""
    examples = [
        Example(t.query, texts[t.positive], texts[t.negative], t.weight, source="feedback")
        for t in data.train
        if t.positive in texts and t.negative in texts
    ]
    if len(examples) < len(data.train):
        log.warning("%d triplets name passages outside the corpus", len(data.train) - len(examples))
    return examples


def replay_examples(count: int, negatives: list[str], seed: int) -> list[Example]:
    """A seeded sample of the original training data: train triples as they are, train pairs
    with a random corpus passage as the negative. Weight 1."""
    rng = random.Random(seed)
    pool = [Example(t.query, t.positive, t.negative) for t in datasets.load_train_triples()]
    pool += [
        Example(p.query, p.positive, rng.choice(negatives)) for p in datasets.load_train_pairs()
    ]
    guard = datasets.evaluation_query_texts()
    pool = [e for e in pool if query_key(e.query) not in guard]
    return rng.sample(pool, min(count, len(pool)))


def parent_collection(version_dir: Path) -> datasets.Collection:
    """The passages the parent indexed: what its fine-tuned child indexes too."""
    return indexed_collection(version_dir)


def teacher_vectors(parent_dir: Path, examples: list[Example]) -> np.ndarray | None:
    """The cached teacher vectors of the examples when the parent was distilled, so the
    fine-tune keeps pulling towards the same space (texts not in the cache are NaN and left
    out: a logged query usually is, its clicked passage is not)."""
    if not read_config(parent_dir).get("training", {}).get("data", {}).get("teacher"):
        return None

    return TeacherCache.load().triplet_vectors(examples)


def parent_vectors(model, tokenizer, examples: list[Example], feedback: int) -> np.ndarray:
    """(n, 3, dim) vectors of each example's query, positive and negative under the parent
    itself, for the distillation terms to anchor on. The first ``feedback`` examples are what
    users taught: their query rows are NaN (no anchor), so only those queries are free to move."""
    cfg = model.config
    with torch.no_grad():
        model.eval()
        queries = encode_texts(
            model.embedding, model.query_tower, tokenizer,
            [e.query for e in examples], cfg.max_query_len,
        )  # fmt: skip
        passages = encode_texts(
            model.embedding, model.passage_tower, tokenizer,
            [t for e in examples for t in (e.positive, e.negative)], cfg.max_passage_len,
        )  # fmt: skip
    vectors = np.concatenate([queries[:, None], passages.reshape(len(examples), 2, -1)], axis=1)
    vectors[:feedback, 0] = np.nan
    return vectors.astype(np.float16)


def fine_tune_config(parent_dir: Path, settings: Settings) -> TrainConfig:
    parent = read_config(parent_dir).get("training", {}).get("train", {})
    base = TrainConfig.from_dict(parent) if parent else TrainConfig()
    return TrainConfig.from_dict(
        {
            **base.to_dict(),
            "epochs": settings.reinforce_epochs,
            "lr": base.lr * settings.reinforce_lr_scale,
            "embedding_lr": base.embedding_lr * settings.reinforce_lr_scale,
            "warmup_steps": 5,
            "seed": settings.seed,
            "query_tower_only": settings.reinforce_passage_lr_scale == 0,
            "passage_lr_scale": settings.reinforce_passage_lr_scale or 1.0,
            "explicit_negative_weight": settings.reinforce_explicit_negative_weight,
        }
    )


def bm25_miner(collection: datasets.Collection, seed: int, depth: int = 10):
    """``mine(query, positives) -> document id | None``: a pick among the query's BM25 top ``depth``
    that is not a known positive, seeded by (seed, query) so the same logs give the same
    negatives whatever order their events arrived in (concurrent users interleave). The index
    is built on first use only."""
    index: list[BM25Index] = []

    def mine(query: str, positives: set[str]) -> str | None:
        if not index:
            index.append(BM25Index.build(collection.ids, collection.texts))
        ids, scores = index[0].search([query], k=depth)
        candidates = [d for d, s in zip(ids[0], scores[0], strict=True) if s > 0]
        candidates = [d for d in candidates if d not in positives]
        rng = random.Random(f"{seed}:{query_key(query)}")  # str seeds hash stably (sha512)
        return rng.choice(candidates) if candidates else None

    return mine


def fine_tune_from_logs(settings: Settings, live_dir: Path, data: LogData, out: Path) -> Path:
    feedback = log_examples(data, parent_collection(live_dir).text_of())
    if not feedback:
        raise ValueError("no log triplet names a passage of the corpus")
    return fine_tune(settings, live_dir, feedback, out)


def fine_tune(settings: Settings, live_dir: Path, feedback: list[Example], out: Path) -> Path:
    """The fine-tune itself, on any taught examples (the logs' triplets, or an oracle's)."""
    started = time.time()
    model, tokenizer = load_model(live_dir)
    collection = parent_collection(live_dir)
    replay = replay_examples(
        int(len(feedback) * settings.reinforce_replay_ratio), collection.texts, settings.seed
    )
    if settings.reinforce_anchor == "parent":
        anchors = parent_vectors(model, tokenizer, feedback + replay, len(feedback))
    else:
        anchors = teacher_vectors(live_dir, feedback + replay)
    examples = ExampleSet.build(feedback + replay, tokenizer, model.config, anchors)
    cfg = fine_tune_config(live_dir, settings)

    connect(settings)
    run_name = f"reinforce-{time.strftime('%Y%m%d-%H%M%S')}-{random.randrange(16**4):04x}"
    history = fit_ray(
        settings.model_copy(update={"train_workers": settings.reinforce_workers}),
        model,
        examples,
        cfg,
        run_name=run_name,
    )
    trained_at = time.time()
    write_version(
        out,
        model,
        tokenizer,
        collection,
        IndexConfig.from_dict(read_index_meta(live_dir)),
        {
            "profile": "reinforce",
            "train": cfg.to_dict(),
            "data": read_config(live_dir).get("training", {}).get("data"),  # inherited
            "examples": {"feedback": len(feedback), "replay": len(replay)},
            "anchor": settings.reinforce_anchor,
            "checkpoint": f"s3://{settings.s3_bucket}/ray-train/{run_name}",
            "history": history,
            "train_seconds": round(trained_at - started, 2),
        },
        {},
    )
    log.info(
        "fine-tuned on %d feedback + %d replay examples in %.0fs, index in %.0fs",
        len(feedback), len(replay), trained_at - started, time.time() - trained_at,
    )  # fmt: skip
    return out
