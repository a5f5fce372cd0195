"""The training objective: encode a batch once, then sum the configured losses' weighted values.

Which losses, with which hyperparameters and weights, is decided by configuration
(:func:`training.train.build_objective`); this module only runs the towers, shares the global
batch between DDP workers and adds the terms up.
"""

from __future__ import annotations

import torch
from torch import nn

from training.examples import Batch, worker_rows
from training.losses import EncodedBatch, TowerStates
from training.model import TwoTower


class TrainingObjective(nn.Module):
    """Wraps a TwoTower so one ``forward`` computes every loss (DDP syncs through forward).

    ``forward`` returns each loss that applies to the batch under its ``name``, plus ``total``,
    the sum of weight × loss. Under DDP (``world`` > 1) every worker collates the same global
    batch, encodes only its :func:`worker_rows` of it, and gathers the other workers' passage
    vectors (with their gradients), so each query still meets the whole global batch as
    in-batch negatives and distillation candidates. DDP's gradient average then equals one
    process training on the global batch: N workers take the same steps as one.
    """

    def __init__(
        self,
        model: TwoTower,
        losses: list[tuple[nn.Module, float]],
        rank: int = 0,
        world: int = 1,
    ):
        super().__init__()
        if not losses:
            raise ValueError("the training objective needs at least one loss")
        self.model = model
        self.losses = nn.ModuleList(loss for loss, _ in losses)
        self.weights = [float(weight) for _, weight in losses]
        self.rank, self.world = rank, world

    @staticmethod
    def _rows(ids: torch.Tensor, lengths: torch.Tensor, mine: slice):
        """This worker's rows, without the padding columns only other rows needed."""
        ids, lengths = ids[mine], lengths[mine]
        return ids[:, : int(lengths.max())], lengths

    def _gather(self, mine: torch.Tensor, total: int) -> torch.Tensor:
        """Every worker's rows of a global batch, in order; gradients flow back to their owner."""
        if self.world == 1:
            return mine
        # Only DDP runs need the collective ops (and an initialised process group).
        import torch.distributed.nn.functional as distributed

        width = -(-total // self.world)
        parts = distributed.all_gather(nn.functional.pad(mine, (0, 0, 0, width - len(mine))))
        shares = [worker_rows(total, r, self.world) for r in range(self.world)]
        return torch.cat([part[: s.stop - s.start] for part, s in zip(parts, shares, strict=True)])

    def encode(self, batch: Batch) -> EncodedBatch:
        """Run the towers on this worker's rows and gather the other workers' passages."""
        model = self.model
        total = len(batch.weights)
        mine = worker_rows(total, self.rank, self.world)
        q_ids, q_lengths = self._rows(batch.q_ids, batch.q_lengths, mine)
        p_ids, p_lengths = self._rows(batch.p_ids, batch.p_lengths, mine)
        q, q_states = model.encode("query", q_ids, q_lengths)
        p, p_states = model.encode("passage", p_ids, p_lengths)
        n, _ = model.encode("passage", *self._rows(batch.n_ids, batch.n_lengths, mine))
        return EncodedBatch(
            rows=mine,
            queries=q,
            positives=p,
            negatives=n,
            all_positives=self._gather(p, total),
            all_negatives=self._gather(n, total),
            same_passage=batch.same_passage[mine],
            weights=batch.weights[mine],
            teacher=None if batch.teacher is None else batch.teacher.float(),
            query_states=TowerStates(model.query_tower.next_token_head, q_states, q_ids, q_lengths),
            passage_states=TowerStates(
                model.passage_tower.next_token_head, p_states, p_ids, p_lengths
            ),
        )

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        encoded = self.encode(batch)
        parts, weighted = {}, []
        for loss, weight in zip(self.losses, self.weights, strict=True):
            value = loss(encoded)
            if value is not None:  # e.g. distillation on a batch without teacher vectors
                parts[loss.name] = value
                weighted.append(weight * value)
        if not weighted:
            raise ValueError("no configured loss applies to this batch")
        parts["total"] = sum(weighted)
        return parts
