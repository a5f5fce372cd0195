"""Evaluation with ir-measures: runs in, metrics out, TREC run files on request.

A *run* is ``{qid: {pid: score}}`` (strings for ids, as TREC files have them). The four
reported columns are MRR@10, R@10, R@100 and nDCG@10. On graded judgments (TREC DL, 0-3) the
binary measures count rel >= 2 as relevant, the standard for those sets; nDCG uses the grades.
"""

from __future__ import annotations

from pathlib import Path

import ir_measures
import numpy as np
from ir_measures import RR, R, nDCG

COLUMNS = ("MRR@10", "R@10", "R@100", "nDCG@10")


def measures_for(qrels: dict[str, dict[str, int]]) -> dict[str, object]:
    graded = any(rel > 1 for docs in qrels.values() for rel in docs.values())
    rel = 2 if graded else 1
    return {
        "MRR@10": RR(rel=rel) @ 10,
        "R@10": R(rel=rel) @ 10,
        "R@100": R(rel=rel) @ 100,
        "nDCG@10": nDCG @ 10,
    }


def evaluate_run(
    run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]
) -> dict[str, float]:
    """Mean of each column over the judged queries (a query with no hits scores 0)."""
    judged = {qid: docs for qid, docs in qrels.items() if any(r > 0 for r in docs.values())}
    if not judged:
        raise ValueError("the qrels hold no relevant judgment")
    measures = measures_for(judged)
    run = {qid: docs for qid, docs in run.items() if qid in judged}
    # ir-measures averages over the judged queries: an unanswered query counts as 0.
    scores = ir_measures.calc_aggregate(list(measures.values()), judged, run)
    return {name: float(scores[m]) for name, m in measures.items()}


def run_from_results(
    qids: list[str], pids: np.ndarray, scores: np.ndarray
) -> dict[str, dict[str, float]]:
    """(n, k) arrays of pids and scores, row i for qids[i] → run dict (missing hits skipped)."""
    run: dict[str, dict[str, float]] = {}
    for qid, row_pids, row_scores in zip(qids, pids, scores, strict=True):
        run[qid] = {
            str(int(p)): float(s)
            for p, s in zip(row_pids, row_scores, strict=True)
            if p >= 0 and np.isfinite(s)
        }
    return run


def write_trec_run(run: dict[str, dict[str, float]], path: Path, tag: str) -> None:
    """Standard 6-column TREC run: ``qid Q0 pid rank score tag``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for qid, docs in run.items():
            ranked = sorted(docs.items(), key=lambda item: (-item[1], item[0]))
            for rank, (pid, score) in enumerate(ranked, 1):
                handle.write(f"{qid} Q0 {pid} {rank} {score:.6f} {tag}\n")
