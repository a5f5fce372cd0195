"""Training examples: (query, positive, negative) texts, tokenized once, with optional teacher
vectors and a per-example weight. Batches are plain tensors, so the same code feeds the local
loop, the Ray Train workers and fine-tuning."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from training.model import ModelConfig, pad_batch
from training.text import Tokenizer


@dataclass
class Example:
    query: str
    positive: str
    negative: str
    weight: float = 1.0
    source: str = "pairs"  # pairs | triples | ict | feedback …: for accounting only


@dataclass
class ExampleSet:
    """Tokenized examples (lists of id lists) plus aligned teacher vectors or None."""

    queries: list[list[int]]
    positives: list[list[int]]
    negatives: list[list[int]]
    weights: np.ndarray
    teacher: np.ndarray | None = None  # (n, 3, d): query, positive, negative vectors

    def __len__(self) -> int:
        return len(self.queries)

    @classmethod
    def build(
        cls,
        examples: list[Example],
        tokenizer: Tokenizer,
        cfg: ModelConfig,
        teacher_vectors: np.ndarray | None = None,
    ) -> ExampleSet:
        if not examples:
            raise ValueError("no training examples")
        if teacher_vectors is not None and teacher_vectors.shape[:2] != (len(examples), 3):
            raise ValueError(f"teacher vectors {teacher_vectors.shape} do not fit the examples")
        q_len, p_len = cfg.max_query_len, cfg.max_passage_len
        return cls(
            queries=[tokenizer.encode(e.query, q_len) for e in examples],
            positives=[tokenizer.encode(e.positive, p_len) for e in examples],
            negatives=[tokenizer.encode(e.negative, p_len) for e in examples],
            weights=np.array([e.weight for e in examples], dtype=np.float32),
            teacher=teacher_vectors,
        )

    def subset(self, rows: np.ndarray) -> ExampleSet:
        return ExampleSet(
            queries=[self.queries[i] for i in rows],
            positives=[self.positives[i] for i in rows],
            negatives=[self.negatives[i] for i in rows],
            weights=self.weights[rows],
            teacher=None if self.teacher is None else self.teacher[rows],
        )

    def concat(self, other: ExampleSet) -> ExampleSet:
        if (self.teacher is None) != (other.teacher is None):
            raise ValueError("cannot mix example sets with and without teacher vectors")
        return ExampleSet(
            queries=self.queries + other.queries,
            positives=self.positives + other.positives,
            negatives=self.negatives + other.negatives,
            weights=np.concatenate([self.weights, other.weights]),
            teacher=None if self.teacher is None else np.concatenate([self.teacher, other.teacher]),
        )


@dataclass
class Batch:
    q_ids: torch.Tensor
    q_lengths: torch.Tensor
    p_ids: torch.Tensor
    p_lengths: torch.Tensor
    n_ids: torch.Tensor
    n_lengths: torch.Tensor
    weights: torch.Tensor
    same_passage: torch.Tensor  # (B, B) True where rows share a positive passage
    teacher: torch.Tensor | None  # (B, 3, d)


def collate(examples: ExampleSet, rows: np.ndarray) -> Batch:
    positives = [examples.positives[i] for i in rows]
    keys = [tuple(p) for p in positives]
    same = torch.tensor([[a == b for b in keys] for a in keys], dtype=torch.bool)
    q_ids, q_len = pad_batch([examples.queries[i] for i in rows])
    p_ids, p_len = pad_batch(positives)
    n_ids, n_len = pad_batch([examples.negatives[i] for i in rows])
    teacher = None if examples.teacher is None else torch.from_numpy(examples.teacher[rows])
    return Batch(
        q_ids, q_len, p_ids, p_len, n_ids, n_len,
        torch.from_numpy(examples.weights[rows]), same, teacher,
    )  # fmt: skip


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int) -> list[np.ndarray]:
    """Shuffled row batches of one epoch (seed + epoch). Every DDP worker gets the same list and
    trains on its :func:`worker_rows` of each batch, so a step is the same global batch of
    ``batch_size`` whatever the number of workers."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    batches = [order[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]
    return batches or [order]  # fewer examples than one batch: train on all of them at once


def worker_rows(size: int, rank: int, world: int) -> slice:
    """This worker's contiguous share of a global batch of ``size`` rows (shares differ by at
    most one row)."""
    return slice(size * rank // world, size * (rank + 1) // world)
