"""Hard negatives for the training queries, mined with BM25 over the corpus.

A BM25 neighbour that shares words with the query but is not its answer teaches the towers
more than a random passage. Two guards keep likely positives out: a candidate whose text is
contained in the positive (the train-pair positives are corpus passages with a title prefix)
is skipped, and, when teacher vectors are given, so is a candidate the teacher scores within
``teacher_margin`` of the positive (MS MARCO has many unjudged relevant passages).
"""

from __future__ import annotations

import numpy as np

from training.bm25 import BM25Index


def mine_bm25_negatives(
    index: BM25Index,
    text_of: dict[str, str],
    queries: list[str],
    positives: list[str],
    per_query: int = 4,
    depth: int = 30,
    seed: int = 13,
    teacher_queries: np.ndarray | None = None,
    teacher_positives: np.ndarray | None = None,
    teacher_passage: dict[str, np.ndarray] | None = None,
    teacher_margin: float = 0.05,
    batch: int = 512,
) -> list[list[str]]:
    """Up to ``per_query`` negative document ids per query, drawn (seeded) from its BM25 top
    ``depth``."""
    if len(queries) != len(positives):
        raise ValueError(f"{len(queries)} queries but {len(positives)} positives")
    use_teacher = teacher_queries is not None
    rng = np.random.default_rng(seed)
    mined: list[list[str]] = []
    from tqdm import tqdm

    for start in tqdm(range(0, len(queries), batch), desc="BM25 negatives", unit="batch"):
        ids, _ = index.search(queries[start : start + batch], k=depth)
        for offset, row in enumerate(ids):
            i = start + offset
            positive = positives[i]
            candidates = [str(d) for d in row if text_of[d] not in positive]
            if use_teacher and candidates:
                # NaN = no cached vector: such a pair is not filtered (NaN compares False).
                ceiling = float(teacher_queries[i] @ teacher_positives[i]) - teacher_margin
                candidates = [
                    p
                    for p in candidates
                    if not float(teacher_queries[i] @ teacher_passage[p]) >= ceiling
                ]
            if len(candidates) > per_query:
                keep = np.sort(rng.choice(len(candidates), per_query, replace=False))
                candidates = [candidates[j] for j in keep]
            mined.append(candidates)
    return mined


def mine_teacher_negatives(
    queries: np.ndarray,
    passages: np.ndarray,
    positive_rows: np.ndarray,
    depth: int = 30,
    skip: int = 3,
    margin: float = 0.05,
    seed: int = 13,
    chunk: int = 2048,
) -> np.ndarray:
    """One hard negative row of ``passages`` per query, from the teacher's own ranking.

    ``queries`` (n, d) and ``passages`` (m, d) are the teacher's L2-normalised vectors and
    ``positive_rows`` (n,) each query's answer. A negative is drawn (seeded) from the teacher's
    ranks ``skip``..``depth``, leaving out the answer and anything the teacher scores within
    ``margin`` of it (likely unjudged positives). Near-misses the teacher can tell apart are
    what the similarity distillation learns most from; -1 where no candidate is left.
    """
    if len(queries) != len(positive_rows):
        raise ValueError(f"{len(queries)} queries but {len(positive_rows)} positive rows")
    rng = np.random.default_rng(seed)
    depth = min(depth, len(passages) - 1)
    chosen = np.full(len(queries), -1, dtype=np.int64)
    from tqdm import tqdm

    for start in tqdm(range(0, len(queries), chunk), desc="teacher negatives", unit="chunk"):
        scores = queries[start : start + chunk] @ passages.T
        top = np.argpartition(-scores, depth, axis=1)[:, :depth]
        for offset, row in enumerate(top):
            i = start + offset
            ranked = row[np.argsort(-scores[offset, row])][skip:]
            ceiling = scores[offset, positive_rows[i]] - margin
            candidates = ranked[(ranked != positive_rows[i]) & (scores[offset, ranked] < ceiling)]
            if len(candidates):
                chosen[i] = candidates[rng.integers(len(candidates))]
    return chosen
