"""Retrieval systems compared by `twotower eval`: dense (a version's towers + Faiss shards),
BM25, and their hybrid. Each turns {qid: query} into a run {qid: {pid: score}}."""

from __future__ import annotations

from pathlib import Path

from training.evaluate import run_from_results
from training.fusion import FUSION_DEPTH, score_fusion
from training.index import load_shards, search_shards
from training.model import QueryEncoder


def dense_run(
    version_dir: Path, queries: dict[str, str], k: int = 100
) -> dict[str, dict[str, float]]:
    """Rank with a version exactly as serving does: QueryEncoder + every shard, merged."""
    encoder = QueryEncoder.load(version_dir)
    shards = load_shards(version_dir)
    qids = list(queries)
    vectors = encoder.encode([queries[q] for q in qids])
    scores, pids = search_shards(shards, vectors, k)
    return run_from_results(qids, pids, scores)


def hybrid_run(
    dense: dict[str, dict[str, float]],
    lexical: dict[str, dict[str, float]],
    dense_weight: float,
    k: int = FUSION_DEPTH,
) -> dict[str, dict[str, float]]:
    """Per query, the score fusion of both runs' top ``k`` (as the API's hybrid mode does)."""
    fused = {}
    for qid in dense.keys() | lexical.keys():
        top = [
            dict(sorted(run.get(qid, {}).items(), key=lambda i: -i[1])[:k])
            for run in (dense, lexical)
        ]
        scores = score_fusion(top[0], top[1], dense_weight)
        fused[qid] = dict(sorted(scores.items(), key=lambda i: -i[1])[:k])
    return fused
