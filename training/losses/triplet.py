"""Triplet margin loss on query–passage cosine similarity, with in-batch negatives."""

from __future__ import annotations

import torch
from torch import nn

from training.losses.encoded import EncodedBatch


class TripletMarginLoss(nn.Module):
    """Mean hinge ``max(0, margin - s(q, p+) + s(q, p-))`` over each query's negatives.

    With ``in_batch`` every other row's positive and negative is a negative too, except a row
    whose positive is the same passage as the query's own. The mean over ~2G candidates gives
    the one explicit negative a 1/2G share, so a clicked passage's lesson "beat the result
    shown above it" would drown among easy in-batch rows: ``explicit_weight`` adds that
    negative's own hinge on top (0: the plain mean).
    """

    name = "triplet"

    def __init__(self, margin: float = 0.2, in_batch: bool = True, explicit_weight: float = 0.0):
        super().__init__()
        self.margin, self.in_batch, self.explicit_weight = margin, in_batch, explicit_weight

    def forward(self, batch: EncodedBatch) -> torch.Tensor:
        return self.compute(
            batch.queries,
            batch.all_positives,
            batch.all_negatives,
            batch.same_passage,
            batch.weights,
            offset=batch.rows.start,
        )

    def compute(
        self,
        queries: torch.Tensor,
        positives: torch.Tensor,
        negatives: torch.Tensor | None = None,
        same_passage: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
        offset: int = 0,
    ) -> torch.Tensor:
        """The loss on plain tensors.

        ``queries`` (B, d) and ``positives``/``negatives`` (G, d) are L2-normalised rows; query
        i's pair is row ``offset + i`` of ``positives`` and its explicit negative (given or
        BM25-mined) the same row of ``negatives``. G = B and offset 0 for one process; under DDP
        each worker holds B of the global batch's G queries and every worker's passages.
        ``same_passage`` (B, G) marks rows whose positive is query i's own passage; ``weights``
        (B,) scale each query's share (feedback triplets carry weights).
        """
        batch, total = queries.shape[0], positives.shape[0]
        if queries.shape[1:] != positives.shape[1:] or not 0 <= offset <= total - batch:
            raise ValueError(
                f"queries {tuple(queries.shape)} at offset {offset} do not fit positives "
                f"{tuple(positives.shape)}"
            )
        rows = torch.arange(batch, device=queries.device) + offset
        positive_scores = (queries * positives[rows]).sum(-1, keepdim=True)  # (B, 1)
        negative_scores, mask = self._candidates(queries, positives, negatives, rows, same_passage)
        hinge = torch.relu(self.margin - positive_scores + negative_scores) * mask
        per_query = hinge.sum(1) / mask.sum(1).clamp(min=1.0)
        if self.explicit_weight > 0 and negatives is not None and self.in_batch:
            own_negative = (queries * negatives[rows]).sum(-1, keepdim=True)
            per_query = per_query + self.explicit_weight * torch.relu(
                self.margin - positive_scores + own_negative
            ).squeeze(1)
        if weights is None:
            return per_query.mean()
        return (per_query * weights).sum() / weights.sum().clamp(min=1e-8)

    def _candidates(self, queries, positives, negatives, rows, same_passage):
        """Each query's negative scores (B, C) and which of them count (a float mask)."""
        batch, total = queries.shape[0], positives.shape[0]
        candidates, valid = [], []
        own = torch.zeros(batch, total, dtype=torch.bool, device=queries.device)
        own[torch.arange(batch, device=queries.device), rows] = True
        if self.in_batch:
            candidates.append(queries @ positives.T)
            valid.append(~(own if same_passage is None else (own | same_passage)))
        if negatives is not None:
            if self.in_batch:
                candidates.append(queries @ negatives.T)
                valid.append(torch.ones_like(own))
            else:
                candidates.append((queries * negatives[rows]).sum(-1, keepdim=True))
                valid.append(torch.ones(batch, 1, dtype=torch.bool, device=queries.device))
        if not candidates:
            raise ValueError("no negatives: pass negatives or set in_batch=True")
        return torch.cat(candidates, dim=1), torch.cat(valid, dim=1).float()
