"""Next-token cross-entropy on an RNN's forward states (the auxiliary language-model task)."""

from __future__ import annotations

import torch
from torch import nn

from training.losses.encoded import EncodedBatch


class NextTokenLoss(nn.Module):
    """Mean of the query and passage towers' next-token cross-entropy.

    ``max_positions`` optionally samples that many positions per tower (cheaper on long
    passages; the sample is drawn from torch's seeded generator). Towers without forward
    states (the mean-pool ablation) have nothing to learn here: the loss is then left out.
    """

    name = "next_token"

    def __init__(self, max_positions: int | None = None):
        super().__init__()
        self.max_positions = max_positions

    def forward(self, batch: EncodedBatch) -> torch.Tensor | None:
        if batch.query_states.states is None:
            return None
        return 0.5 * (self.compute(*batch.query_states) + self.compute(*batch.passage_states))

    def compute(
        self,
        head: nn.AdaptiveLogSoftmaxWithLoss,
        states: torch.Tensor,
        ids: torch.Tensor,
        lengths: torch.Tensor,
    ) -> torch.Tensor:
        """Mean cross-entropy of predicting ``ids[:, t + 1]`` from ``states[:, t]``.

        ``states`` must come from a forward-only RNN (it has seen tokens 0..t and nothing
        later). Padded positions are excluded.
        """
        steps = torch.arange(ids.shape[1] - 1, device=ids.device)[None, :]
        valid = steps < (lengths[:, None] - 1)
        inputs = states[:, :-1][valid]
        targets = ids[:, 1:][valid]
        if inputs.shape[0] == 0:
            return states.sum() * 0.0
        if self.max_positions is not None and inputs.shape[0] > self.max_positions:
            keep = torch.randperm(inputs.shape[0], device=ids.device)[: self.max_positions]
            inputs, targets = inputs[keep], targets[keep]
        return head(inputs, targets).loss
