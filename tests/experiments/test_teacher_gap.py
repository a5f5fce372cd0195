"""The student/teacher gap diagnosis (experiments/teacher_gap.py); the teacher itself is not
needed: its vectors are stand-ins here, the scoring is the real code."""

import numpy as np
import pytest

from experiments.teacher_gap import gap_table, student_passages
from training.index import load_shards, search_shards


def test_student_passages_reads_back_the_indexed_vectors(tiny_version_dir):
    shards = load_shards(tiny_version_dir)
    ids = shards[-1].ids[:5].tolist() + [shards[0].ids[0]]
    vectors = student_passages(tiny_version_dir, ids)
    _, found = search_shards(shards, vectors, 1)
    assert found[:, 0].tolist() == ids  # each read-back vector finds its own passage first
    with pytest.raises(ValueError, match="not in this version's index"):
        student_passages(tiny_version_dir, ["no such document"])


def test_gap_table_scores_every_mix_of_query_and_passage_vectors():
    rng = np.random.default_rng(0)

    def unit(rows):
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    passages = unit(rng.normal(size=(50, 16)))
    ids = [str(i) for i in range(100, 150)]
    qids = [str(i) for i in range(10)]
    qrels = {q: {str(100 + i): 1} for i, q in enumerate(qids)}
    close = unit(passages[:10] + 0.05 * rng.normal(size=(10, 16)))  # query i ≈ passage i
    far = unit(rng.normal(size=(10, 16)))
    table = gap_table(
        {"student": far, "teacher": close},
        {"student": unit(rng.normal(size=(50, 16))), "teacher": passages},
        ids,
        qids,
        qrels,
    )
    assert len(table) == 4
    assert table["teacher queries × teacher passages"]["MRR@10"] == 1.0
    assert table["student queries × teacher passages"]["MRR@10"] < 0.5
    assert table["teacher queries × student passages"]["MRR@10"] < 0.5
