"""The per-epoch validator of training: cheap, in memory, and blind to dev and DL19."""

from __future__ import annotations

import numpy as np

from training.model import TwoTower, encode_texts


class HoldoutValidator:
    """MRR@10 / R@10 of held-out labelled pairs, each positive ranked among the other held-out
    positives plus a fixed random pool of corpus passages. Cheap enough to run every epoch, and
    it never touches dev or DL19."""

    def __init__(self, queries, positives, pool_texts, tokenizer, cfg):
        self.tokenizer, self.cfg = tokenizer, cfg
        self.queries, self.candidates = list(queries), list(positives) + list(pool_texts)

    def __call__(self, model: TwoTower) -> dict[str, float]:
        model.eval()
        cfg = model.config
        q = encode_texts(
            model.embedding, model.query_tower, self.tokenizer, self.queries, cfg.max_query_len
        )
        p = encode_texts(
            model.embedding,
            model.passage_tower,
            self.tokenizer,
            self.candidates,
            cfg.max_passage_len,
        )
        scores = q @ p.T
        own = scores[np.arange(len(q)), np.arange(len(q))]
        ranks = 1 + (scores > own[:, None]).sum(1)
        return {
            "mrr10": float(np.mean(np.where(ranks <= 10, 1.0 / ranks, 0.0))),
            "r10": float(np.mean(ranks <= 10)),
        }
