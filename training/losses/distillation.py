"""Distillation from a teacher's similarity scores (teacher used at training time only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.losses.encoded import EncodedBatch


class SimilarityDistillationLoss(nn.Module):
    """KL(teacher ‖ student) between each query's softmax over the batch's passages.

    The student learns to rank the in-batch passages (every row's positive and negative) as
    the teacher does, so the two vector spaces never need the same size. Left out of a batch
    whose examples carry no teacher vectors.
    """

    name = "distill"

    def __init__(self, student_temperature: float = 0.05, teacher_temperature: float = 0.05):
        super().__init__()
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature

    def forward(self, batch: EncodedBatch) -> torch.Tensor | None:
        if batch.teacher is None:
            return None
        teacher = batch.teacher
        return self.compute(
            batch.queries,
            torch.cat([batch.all_positives, batch.all_negatives]),
            teacher[batch.rows, 0],
            torch.cat([teacher[:, 1], teacher[:, 2]]),
        )

    def compute(
        self,
        student_queries: torch.Tensor,
        student_passages: torch.Tensor,
        teacher_queries: torch.Tensor,
        teacher_passages: torch.Tensor,
    ) -> torch.Tensor:
        """The loss on plain tensors: all inputs are L2-normalised rows. A teacher row holding
        NaN (no cached vector) is left out: a query without one is skipped, a passage without
        one is not a candidate."""
        query_ok = torch.isfinite(teacher_queries).all(dim=1)
        passage_ok = torch.isfinite(teacher_passages).all(dim=1)
        if query_ok.sum() == 0 or passage_ok.sum() < 2:
            return student_queries.sum() * 0.0
        student = student_queries[query_ok] @ student_passages[passage_ok].T
        student = student / self.student_temperature
        with torch.no_grad():
            scores = teacher_queries[query_ok] @ teacher_passages[passage_ok].T
            teacher = F.softmax(scores / self.teacher_temperature, dim=1)
        return F.kl_div(F.log_softmax(student, dim=1), teacher, reduction="batchmean")
