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
    offset: int = 0,
    explicit_weight: float = 0.0,
) -> torch.Tensor:
    """Mean hinge ``max(0, margin - s(q, p+) + s(q, p-))`` over each query's negatives.

    ``queries`` (B, d) and ``positives``/``negatives`` (G, d) are L2-normalised rows; query i's
    pair is row ``offset + i`` of ``positives`` and its explicit negative (given or BM25-mined)
    the same row of ``negatives``. G = B and offset 0 for one process; under DDP each worker
    holds B of the global batch's G queries and every worker's passages (gathered).
    With ``in_batch`` every other row's positive and negative is a negative too, except where
    ``same_passage`` (B, G) says the other row's positive is the same passage as query i's.
    ``weights`` (B,) scale each query's share (feedback triplets carry weights).

    The mean over ~2G candidates gives the one explicit negative a 1/2G share, so a clicked
    passage's lesson "beat the result shown above it" would drown among easy in-batch rows.
    ``explicit_weight`` adds that negative's own hinge on top (0: the plain mean).
    """
    batch, total = queries.shape[0], positives.shape[0]
    if queries.shape[1:] != positives.shape[1:] or not 0 <= offset <= total - batch:
        raise ValueError(
            f"queries {tuple(queries.shape)} at offset {offset} do not fit positives "
            f"{tuple(positives.shape)}"
        )
    rows = torch.arange(batch, device=queries.device) + offset
    positive_scores = (queries * positives[rows]).sum(-1, keepdim=True)  # (B, 1)
    candidates, valid = [], []
    own = torch.zeros(batch, total, dtype=torch.bool, device=queries.device)
    own[torch.arange(batch, device=queries.device), rows] = True
    if in_batch:
        candidates.append(queries @ positives.T)
        blocked = own if same_passage is None else (own | same_passage)
        valid.append(~blocked)
    if negatives is not None:
        if in_batch:
            candidates.append(queries @ negatives.T)
            valid.append(torch.ones_like(own))
        else:
            candidates.append((queries * negatives[rows]).sum(-1, keepdim=True))
            valid.append(torch.ones(batch, 1, dtype=torch.bool, device=queries.device))
    if not candidates:
        raise ValueError("no negatives: pass negatives or set in_batch=True")
    negative_scores = torch.cat(candidates, dim=1)
    mask = torch.cat(valid, dim=1).float()
    hinge = torch.relu(margin - positive_scores + negative_scores) * mask
    per_query = hinge.sum(1) / mask.sum(1).clamp(min=1.0)
    if explicit_weight > 0 and negatives is not None and in_batch:
        own_negative = (queries * negatives[rows]).sum(-1, keepdim=True)
        per_query = per_query + explicit_weight * torch.relu(
            margin - positive_scores + own_negative
        ).squeeze(1)
    if weights is None:
        return per_query.mean()
    return (per_query * weights).sum() / weights.sum().clamp(min=1e-8)
