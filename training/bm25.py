"""BM25 with bm25s (PyStemmer English stemming, English stop words): the lexical baseline,
the hard-negative miner and the lexical half of the hybrid.

``k1``/``b`` are tuned on the dev queries with :func:`tune` (the baseline is BM25 tuned on
dev, so its dev numbers are slightly optimistic; DL19 is untouched by tuning). The tuned values
are the defaults below; ``python -m experiments.bm25_grid`` re-runs the grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import bm25s
import numpy as np
import Stemmer

from training.text import normalise

# The best dev MRR@10 of `python -m experiments.bm25_grid` (docs/results/quality.md, "BM25
# tuned on dev").
TUNED_K1, TUNED_B = 0.9, 0.75


@dataclass
class BM25Config:
    k1: float = TUNED_K1
    b: float = TUNED_B
    method: str = "lucene"

    def __post_init__(self) -> None:
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={self.k1}, b={self.b}")


def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def analyse(texts: list[str], show_progress: bool = False) -> list[list[str]]:
    """NFKC + lower-case (as the model's tokenizer), stop words out, Snowball stems."""
    return bm25s.tokenize(
        [normalise(t) for t in texts],
        stopwords="en",
        stemmer=_stemmer(),
        return_ids=False,
        show_progress=show_progress,
    )


class BM25Index:
    """A bm25s index over ``texts`` whose rows map to document ``ids``."""

    def __init__(self, retriever: bm25s.BM25, ids: list[str], cfg: BM25Config):
        self.retriever = retriever
        self.ids = np.asarray(ids, dtype=object)
        self.cfg = cfg

    @classmethod
    def build(
        cls, ids: list[str], texts: list[str], cfg: BM25Config | None = None, progress=False
    ) -> BM25Index:
        return cls.from_tokens(ids, analyse(texts, progress), cfg, progress)

    @classmethod
    def from_tokens(
        cls, ids: list[str], tokens: list[list[str]], cfg: BM25Config | None = None, progress=False
    ) -> BM25Index:
        cfg = cfg or BM25Config()
        retriever = bm25s.BM25(k1=cfg.k1, b=cfg.b, method=cfg.method)
        retriever.index(tokens, show_progress=progress, create_empty_token=True)
        return cls(retriever, ids, cfg)

    def search(
        self, queries: list[str], k: int = 100, progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids (n, k), scores (n, k)), best first. An all-stop-word query scores 0 everywhere."""
        if not queries:
            return np.zeros((0, k), dtype=object), np.zeros((0, k), dtype=np.float32)
        k = min(k, len(self.ids))
        rows, scores = self.retriever.retrieve(
            analyse(queries), k=k, show_progress=progress, n_threads=0
        )
        return self.ids[rows], scores

    def run(self, queries: dict[str, str], k: int = 100) -> dict[str, dict[str, float]]:
        qids = list(queries)
        ids, scores = self.search([queries[q] for q in qids], k)
        return {  # a zero score means no query term matched: not a hit
            qid: {str(d): float(s) for d, s in zip(row_d, row_s, strict=True) if s > 0}
            for qid, row_d, row_s in zip(qids, ids, scores, strict=True)
        }
