"""What every loss reads: one worker's view of a global batch after the towers encoded it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn


class TowerStates(NamedTuple):
    """One tower's forward-RNN states over its token ids, and the head that predicts the next
    token (states and head are None where the tower has none, e.g. the mean-pool ablation)."""

    head: nn.Module | None
    states: torch.Tensor | None
    ids: torch.Tensor
    lengths: torch.Tensor


@dataclass
class EncodedBatch:
    """The towers encode a batch once and every configured loss reads its inputs from here.

    Under DDP each worker encodes ``rows`` (B of the global batch's G rows); the ``all_*``
    vectors are every worker's, gathered in order with gradients flowing back to their owner.
    """

    rows: slice
    queries: torch.Tensor  # (B, d) this worker's query vectors
    positives: torch.Tensor  # (B, d) this worker's positive-passage vectors
    negatives: torch.Tensor  # (B, d) this worker's explicit-negative vectors
    all_positives: torch.Tensor  # (G, d)
    all_negatives: torch.Tensor  # (G, d)
    same_passage: torch.Tensor  # (B, G) True where the other row's positive is the same passage
    weights: torch.Tensor  # (B,) each example's weight
    teacher: torch.Tensor | None  # (G, 3, d) float teacher vectors (query, positive, negative)
    query_states: TowerStates
    passage_states: TowerStates  # the positive passages' states
