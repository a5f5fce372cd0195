"""Distillation from a teacher's similarity scores (teacher used at training time only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def similarity_distillation_loss(
    student_queries: torch.Tensor,
    student_passages: torch.Tensor,
    teacher_queries: torch.Tensor,
    teacher_passages: torch.Tensor,
    student_temperature: float = 0.05,
    teacher_temperature: float = 0.05,
) -> torch.Tensor:
    """KL(teacher ‖ student) between each query's softmax over the batch's passages.

    The student learns to rank the in-batch passages as the teacher does, so the two vector
    spaces never need the same size. All inputs are L2-normalised rows.
    """
    student = (student_queries @ student_passages.T) / student_temperature
    with torch.no_grad():
        teacher = F.softmax((teacher_queries @ teacher_passages.T) / teacher_temperature, dim=1)
    return F.kl_div(F.log_softmax(student, dim=1), teacher, reduction="batchmean")
