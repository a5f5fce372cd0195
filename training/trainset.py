"""Assemble the training examples of a version from the TRAINING data only.

Ingredients, each a setting so its effect can be measured:
- labelled pairs (train.pairs.tsv) with a BM25-mined hard negative;
- the given triples (train.triples.tsv);
- inverse-cloze pseudo-queries: a span of a passage → that passage (self-supervised), with a
  random negative or one mined from the teacher's ranking of the corpus;
- teacher vectors from the shipped cache for distillation (all-MiniLM-L6-v2, offline).

A fixed slice of the labelled pairs is held out (never trained on) to report validation
metrics per epoch, so dev and DL19 stay untouched until the final evaluation.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import numpy as np

from training import datasets
from training.bm25 import BM25Index
from training.examples import Example
from training.negatives import mine_bm25_negatives, mine_teacher_negatives
from training.pseudo_queries import inverse_cloze_spans
from training.teacher import SPAN_SEED, TeacherCache
from training.text import query_key


@dataclass
class DataConfig:
    pairs: bool = True
    triples: bool = True
    ict: int = 44000  # inverse-cloze examples (0 = none, at most one per passage)
    bm25_negatives: bool = True  # else a random corpus passage
    # Negatives of the inverse-cloze spans: "teacher" mines near misses from the teacher's
    # ranking of the corpus (random when teacher=false, which turns every teacher use off).
    ict_negatives: str = "teacher"  # teacher | random
    teacher: bool = True  # attach teacher vectors (distillation) and filter false negatives
    holdout_pairs: int = 300  # labelled pairs kept out of training for validation
    max_pairs: int | None = None  # cap the labelled pairs (quick profiles)

    def __post_init__(self) -> None:
        if self.ict < 0 or self.holdout_pairs < 0 or (self.max_pairs or 0) < 0:
            raise ValueError("ict, holdout_pairs and max_pairs must be >= 0")
        if not (self.pairs or self.triples or self.ict):
            raise ValueError("no training data: enable pairs, triples or ict")
        if self.ict_negatives not in ("random", "teacher"):
            raise ValueError(f"ict_negatives must be random or teacher, not {self.ict_negatives!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainingData:
    examples: list[Example]
    teacher: np.ndarray | None  # (n, 3, d) aligned with examples
    holdout: list[datasets.TrainPair]
    counts: dict[str, int]


def _assert_no_evaluation_queries(queries: list[str]) -> None:
    evaluation = datasets.evaluation_query_texts()
    leaked = [q for q in queries if query_key(q) in evaluation]
    if leaked:
        raise ValueError(
            f"{len(leaked)} evaluation queries in the training data, e.g. {leaked[0]!r}"
        )


def build_training_data(
    cfg: DataConfig,
    seed: int,
    bm25: BM25Index | None = None,
    teacher: TeacherCache | None = None,
) -> TrainingData:
    collection = datasets.load_collection()
    rng = random.Random(seed)  # one stream, drawn in a fixed order: the same seed, the same data
    if cfg.teacher and teacher is None:
        teacher = TeacherCache.load()
    if cfg.bm25_negatives and bm25 is None:
        bm25 = BM25Index.build(collection.ids, collection.texts)

    pairs = list(datasets.load_train_pairs())
    random.Random(seed).shuffle(pairs)
    holdout, pairs = pairs[: cfg.holdout_pairs], pairs[cfg.holdout_pairs :]
    if cfg.max_pairs is not None:
        pairs = pairs[: cfg.max_pairs]
    examples: list[Example] = []
    counts: dict[str, int] = {}

    if cfg.pairs and pairs:
        examples += _pair_examples(cfg, pairs, collection, bm25, teacher, rng, seed)
        counts["pairs"] = len(pairs)

    if cfg.triples:
        triples = datasets.load_train_triples()
        examples += [Example(t.query, t.positive, t.negative, source="triples") for t in triples]
        counts["triples"] = len(triples)

    if cfg.ict > 0:
        ict = _ict_examples(cfg, collection, teacher, rng, seed)
        examples += ict
        counts["ict"] = len(ict)

    _assert_no_evaluation_queries([e.query for e in examples])
    vectors = teacher.triplet_vectors(examples) if cfg.teacher else None
    return TrainingData(examples, vectors, holdout, counts)


def _pair_examples(cfg, pairs, collection, bm25, teacher, rng, seed) -> list[Example]:
    """Labelled pairs, each with a mined BM25 negative (or a random passage)."""
    text_of = collection.text_of()
    queries = [p.query for p in pairs]
    positives = [p.positive for p in pairs]
    mined: list[list[str]] = [[] for _ in pairs]
    if cfg.bm25_negatives:
        kwargs = {}
        if cfg.teacher:
            kwargs = dict(
                teacher_queries=np.stack([teacher.lookup(q) for q in queries]),
                teacher_positives=np.stack([teacher.lookup(p) for p in positives]),
                teacher_passage={
                    doc_id: teacher.lookup(text)
                    for doc_id, text in zip(collection.ids, collection.texts, strict=True)
                },
            )
        mined = mine_bm25_negatives(bm25, text_of, queries, positives, seed=seed, **kwargs)
    examples = []
    for pair, negatives in zip(pairs, mined, strict=True):
        negative = text_of[rng.choice(negatives)] if negatives else rng.choice(collection.texts)
        examples.append(Example(pair.query, pair.positive, negative, source="pairs"))
    return examples


def _ict_examples(cfg, collection, teacher, rng, seed) -> list[Example]:
    """Inverse-cloze examples: a span of a passage as the query, the passage as its positive."""
    # The same seeded spans the teacher cache encoded.
    spans = teacher.spans if teacher else inverse_cloze_spans(collection.texts, SPAN_SEED)
    rows = rng.sample(range(len(collection)), min(cfg.ict, len(collection)))
    # A span can repeat an evaluation query word for word (a passage that quotes the
    # question): it is left out, never trained on.
    evaluation = datasets.evaluation_query_texts()
    rows = [r for r in rows if query_key(spans[r]) not in evaluation]
    mined = np.full(len(rows), -1)
    if cfg.ict_negatives == "teacher" and cfg.teacher:
        span_vectors = np.stack([teacher.lookup(spans[r]) for r in rows])
        mined = mine_teacher_negatives(span_vectors, teacher.passages, np.array(rows), seed=seed)
    examples = []
    for row, negative_row in zip(rows, mined, strict=True):
        if negative_row < 0:
            negative_row = rng.randrange(len(collection))
        negative = collection.texts[negative_row]
        examples.append(Example(spans[row], collection.texts[row], negative, source="ict"))
    return examples
