"""Hybrid ranking: a weighted sum of min-max-normalised dense and BM25 scores.

One function for `twotower eval` and for the API's ``mode: hybrid`` so they rank alike.
Equal-weight reciprocal-rank fusion let a weaker dense side drag BM25 down
(docs/results/quality.md, "The hybrid: score fusion, its weight tuned on dev");
a convex combination of scores, with the dense weight tuned on dev like BM25's k1 and b,
keeps what each side is sure of. A passage missing from one list scores that list's minimum.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

FUSION_DEPTH = 100  # each side contributes its top 100 (eval and serving alike)


def _min_max(scores: Mapping[Hashable, float]) -> dict[Hashable, float]:
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    span = high - low
    return {key: (value - low) / span if span > 0 else 1.0 for key, value in scores.items()}


def score_fusion(
    dense: Mapping[Hashable, float], lexical: Mapping[Hashable, float], dense_weight: float
) -> dict[Hashable, float]:
    """{passage: w · dense' + (1 − w) · lexical'} with each side min-max scaled to [0, 1]."""
    if not 0.0 <= dense_weight <= 1.0:
        raise ValueError(f"dense_weight must be in [0, 1], got {dense_weight}")
    a, b = _min_max(dense), _min_max(lexical)
    return {
        key: dense_weight * a.get(key, 0.0) + (1.0 - dense_weight) * b.get(key, 0.0)
        for key in a.keys() | b.keys()
    }
