"""Runs: {qid: query} in, {qid: {doc_id: score}} out (strings for ids, as TREC files have them).

Dense ranking is written once here (:func:`dense_search`) and ranks exactly as serving does;
BM25 and the hybrid use the same fusion as the API's hybrid mode."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from training import datasets
from training.fusion import FUSION_DEPTH, score_fusion
from training.index import load_shards, search_shards
from training.model import QueryEncoder, encode_texts, load_model


def dense_search(
    version_dir: Path, queries: dict[str, str], k: int = 100
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(qids, ids, scores) from the version's QueryEncoder and every shard, merged: serving's
    search, in-process."""
    qids = list(queries)
    if not qids:
        return qids, np.empty((0, k), dtype=object), np.empty((0, k), dtype=np.float32)
    vectors = QueryEncoder.load(version_dir).encode([queries[q] for q in qids])
    scores, ids = search_shards(load_shards(version_dir), vectors, k)
    return qids, ids, scores


def dense_run(
    version_dir: Path, queries: dict[str, str], k: int = 100
) -> dict[str, dict[str, float]]:
    """The version's dense ranking as a run."""
    return run_from_results(*dense_search(version_dir, queries, k))


def dense_ranking(version_dir: Path, queries: dict[str, str], k: int = 10) -> dict[str, list[str]]:
    """qid -> the version's top-k document ids, best first."""
    qids, ids, _ = dense_search(version_dir, queries, k)
    return {qid: [d for d in row if d is not None] for qid, row in zip(qids, ids, strict=True)}


def exact_dense_run(
    model_dir: Path, queries: dict[str, str], k: int = 100
) -> dict[str, dict[str, float]]:
    """Exact search over the whole corpus with a model folder that has no index (the ablation)."""
    model, tokenizer = load_model(model_dir)
    collection = datasets.load_collection()
    passages = encode_texts(
        model.embedding, model.passage_tower, tokenizer, collection.texts,
        model.config.max_passage_len, progress=True,
    )  # fmt: skip
    index = faiss.IndexFlatIP(passages.shape[1])
    index.add(passages)
    qids = list(queries)
    scores, rows = index.search(QueryEncoder.load(model_dir).encode([queries[q] for q in qids]), k)
    return run_from_results(qids, np.asarray(collection.ids, dtype=object)[rows], scores)


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


def run_from_results(
    qids: list[str], ids: np.ndarray, scores: np.ndarray
) -> dict[str, dict[str, float]]:
    """(n, k) arrays of ids and scores, row i for qids[i] → run dict (missing hits skipped)."""
    run: dict[str, dict[str, float]] = {}
    for qid, row_ids, row_scores in zip(qids, ids, scores, strict=True):
        run[qid] = {
            str(d): float(s)
            for d, s in zip(row_ids, row_scores, strict=True)
            if d is not None and np.isfinite(s)
        }
    return run


def write_trec_run(run: dict[str, dict[str, float]], path: Path, tag: str) -> None:
    """Standard 6-column TREC run: ``qid Q0 doc_id rank score tag``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for qid, docs in run.items():
            ranked = sorted(docs.items(), key=lambda item: (-item[1], item[0]))
            for rank, (doc_id, score) in enumerate(ranked, 1):
                handle.write(f"{qid} Q0 {doc_id} {rank} {score:.6f} {tag}\n")
