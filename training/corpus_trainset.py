"""Training examples for a corpus that has no labelled queries: self-supervision only.

Each example is an inverse-cloze pseudo-query (a span of a passage) with that passage as its
positive and a BM25 neighbour of the span as its negative (``bm25_negatives``, the default): a
passage that shares the span's words but is not its source teaches the towers more than a
random one. A candidate whose text
holds the span's passage (a duplicate) is never the negative. Teacher vectors are attached
wherever the teacher cache holds a text; the distillation losses leave the other rows out.

A seeded slice of the spans is held out, never trained on, for the per-epoch validation.
"""

from __future__ import annotations

import random

import numpy as np

from training import datasets
from training.bm25 import BM25Index
from training.examples import Example
from training.negatives import mine_bm25_negatives
from training.pseudo_queries import inverse_cloze_spans
from training.teacher import SPAN_SEED, TeacherCache
from training.text import query_key
from training.trainset import DataConfig, TrainingData


def build_corpus_data(
    collection: datasets.Collection,
    cfg: DataConfig,
    seed: int,
    bm25: BM25Index,
    teacher: TeacherCache | None = None,
    labelled: list[tuple[str, str]] = (),
) -> TrainingData:
    """Up to ``cfg.ict`` pseudo-query examples (at most one per passage) and
    ``cfg.holdout_pairs`` held-out ones, plus one example per ``labelled`` (query, relevant
    passage text) pair the user has, each with a mined negative alike."""
    if len(collection) < 2:
        raise ValueError("a corpus needs at least two documents to train on")
    # The teacher cache encoded the spans of this seed: the same spans find their vectors.
    spans = inverse_cloze_spans(collection.texts, SPAN_SEED)
    rng = random.Random(seed)
    wanted = min(len(collection), max(cfg.ict, 1) + cfg.holdout_pairs)
    rows = rng.sample(range(len(collection)), wanted)
    # A span can repeat an evaluation query word for word (a passage that quotes it).
    evaluation = datasets.evaluation_query_texts()
    rows = [r for r in rows if spans[r].strip() and query_key(spans[r]) not in evaluation]
    holdout_rows = rows[: min(cfg.holdout_pairs, len(rows) // 5)]
    train_rows = rows[len(holdout_rows) :]

    text_of = collection.text_of()
    queries = [spans[r] for r in train_rows] + [q for q, _ in labelled]
    positives = [collection.texts[r] for r in train_rows] + [p for _, p in labelled]
    sources = ["ict"] * len(train_rows) + ["labelled"] * len(labelled)
    kwargs = {}
    if teacher is not None:
        kwargs = dict(
            teacher_queries=np.stack([teacher.lookup(q) for q in queries]),
            teacher_positives=np.stack([teacher.lookup(p) for p in positives]),
            teacher_passage={d: teacher.lookup(text_of[d]) for d in collection.ids},
        )
    if cfg.bm25_negatives:
        mined = mine_bm25_negatives(bm25, text_of, queries, positives, seed=seed, **kwargs)
    else:  # every negative a random passage
        mined = [[] for _ in queries]
    examples = []
    for query, positive, negatives, source in zip(queries, positives, mined, sources, strict=True):
        if negatives:
            negative = text_of[rng.choice(negatives)]
        else:  # no lexical neighbour: any other passage
            negative = rng.choice(collection.texts)
            while negative == positive:
                negative = rng.choice(collection.texts)
        examples.append(Example(query, positive, negative, source=source))
    holdout = [datasets.TrainPair(f"span-{r}", spans[r], collection.texts[r]) for r in holdout_rows]
    vectors = teacher.triplet_vectors(examples) if teacher is not None else None
    counts = {"ict": len(train_rows), "labelled": len(labelled), "holdout": len(holdout)}
    if vectors is not None:
        counts["teacher_rows"] = int(np.isfinite(vectors[:, :, 0]).all(axis=1).sum())
    return TrainingData(examples, vectors, holdout, counts)
