"""Triplet margin loss on query–passage cosine similarity, with in-batch negatives."""

from __future__ import annotations

import torch


def triplet_margin_loss(
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor | None = None,
    margin: float = 0.2,
    in_batch: bool = True,
    same_passage: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean hinge ``max(0, margin - s(q, p+) + s(q, p-))`` over each query's negatives.

    ``queries`` and ``positives`` are (B, d) L2-normalised rows, row i of each a pair.
    ``negatives`` (B, d) are explicit negatives (given or BM25-mined), row i for query i.
    With ``in_batch`` every other row's positive and negative is a negative too, except where
    ``same_passage`` (B, B) says the other row's positive is the same passage as row i's.
    ``weights`` (B,) scale each query's share (feedback triplets carry weights).
    """
    if queries.shape != positives.shape:
        raise ValueError(f"queries {tuple(queries.shape)} and positives {tuple(positives.shape)}")
    positive_scores = (queries * positives).sum(-1, keepdim=True)  # (B, 1)
    candidates, valid = [], []
    batch = queries.shape[0]
    eye = torch.eye(batch, dtype=torch.bool, device=queries.device)
    if in_batch:
        candidates.append(queries @ positives.T)
        blocked = eye if same_passage is None else (eye | same_passage)
        valid.append(~blocked)
    if negatives is not None:
        if in_batch:
            candidates.append(queries @ negatives.T)
            valid.append(torch.ones_like(eye))
        else:
            candidates.append((queries * negatives).sum(-1, keepdim=True))
            valid.append(torch.ones(batch, 1, dtype=torch.bool, device=queries.device))
    if not candidates:
        raise ValueError("no negatives: pass negatives or set in_batch=True")
    negative_scores = torch.cat(candidates, dim=1)
    mask = torch.cat(valid, dim=1).float()
    hinge = torch.relu(margin - positive_scores + negative_scores) * mask
    per_query = hinge.sum(1) / mask.sum(1).clamp(min=1.0)
    if weights is None:
        return per_query.mean()
    return (per_query * weights).sum() / weights.sum().clamp(min=1e-8)
