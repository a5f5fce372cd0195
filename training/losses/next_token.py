"""Next-token cross-entropy on an RNN's forward states (the auxiliary language-model task)."""

from __future__ import annotations

import torch
from torch import nn


def next_token_loss(
    head: nn.AdaptiveLogSoftmaxWithLoss,
    states: torch.Tensor,
    ids: torch.Tensor,
    lengths: torch.Tensor,
    max_positions: int | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of predicting ``ids[:, t + 1]`` from ``states[:, t]``.

    ``states`` must come from a forward-only RNN (it has seen tokens 0..t and nothing later).
    Padded positions are excluded. ``max_positions`` optionally samples that many positions
    (cheaper on long passages; the sample is drawn from torch's seeded generator).
    """
    steps = torch.arange(ids.shape[1] - 1, device=ids.device)[None, :]
    valid = steps < (lengths[:, None] - 1)
    inputs = states[:, :-1][valid]
    targets = ids[:, 1:][valid]
    if inputs.shape[0] == 0:
        return states.sum() * 0.0
    if max_positions is not None and inputs.shape[0] > max_positions:
        keep = torch.randperm(inputs.shape[0], device=ids.device)[:max_positions]
        inputs, targets = inputs[keep], targets[keep]
    return head(inputs, targets).loss
