"""Distillation of the teacher's vectors themselves (teacher used at training time only)."""

from __future__ import annotations

import torch
from torch import nn

from training.losses.encoded import EncodedBatch


class EmbeddingDistillationLoss(nn.Module):
    """Mean (1 − cosine) between each student vector and its teacher vector.

    Where :class:`SimilarityDistillationLoss` only asks the student to order a batch's
    passages as the teacher does, this asks both towers to land where the teacher puts each
    text, so every text gives a full vector of signal, and queries and passages meet in the
    teacher's space. It needs the model's ``dim`` to equal the teacher's (384 for MiniLM).
    Left out of a batch whose examples carry no teacher vectors.
    """

    name = "embed_distill"

    def forward(self, batch: EncodedBatch) -> torch.Tensor | None:
        if batch.teacher is None:
            return None
        mine = batch.teacher[batch.rows]
        return self.compute(
            torch.cat([batch.queries, batch.positives, batch.negatives]),
            torch.cat([mine[:, 0], mine[:, 1], mine[:, 2]]),
        )

    def compute(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The loss on plain tensors (L2-normalised rows); rows whose teacher vector holds NaN
        (not cached) are left out."""
        if student.shape[-1] != teacher.shape[-1]:
            raise ValueError(
                f"embedding distillation needs the model's dim ({student.shape[-1]}) to equal "
                f"the teacher's ({teacher.shape[-1]}); set dim={teacher.shape[-1]} or "
                "embed_distill_weight=0"
            )
        ok = torch.isfinite(teacher).all(dim=1)
        if ok.sum() == 0:
            return student.sum() * 0.0
        return (1.0 - (student[ok] * teacher[ok]).sum(dim=1)).mean()
