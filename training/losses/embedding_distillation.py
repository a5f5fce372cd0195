"""Distillation of the teacher's vectors themselves (teacher used at training time only)."""

from __future__ import annotations

import torch


def embedding_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean (1 − cosine) between each student vector and its teacher vector.

    Where :func:`similarity_distillation_loss` only asks the student to order a batch's
    passages as the teacher does, this asks both towers to land where the teacher puts each
    text, so every text gives a full vector of signal, and queries and passages meet in the
    teacher's space. It needs the model's ``dim`` to equal the teacher's (384 for MiniLM).
    Rows whose teacher vector holds NaN (not cached) are left out.
    """
    if student.shape[-1] != teacher.shape[-1]:
        raise ValueError(
            f"embedding distillation needs the model's dim ({student.shape[-1]}) to equal the "
            f"teacher's ({teacher.shape[-1]}); set dim={teacher.shape[-1]} or "
            "embed_distill_weight=0"
        )
    ok = torch.isfinite(teacher).all(dim=1)
    if ok.sum() == 0:
        return student.sum() * 0.0
    return (1.0 - (student[ok] * teacher[ok]).sum(dim=1)).mean()
