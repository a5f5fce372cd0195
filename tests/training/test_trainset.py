"""Training sets: the right ingredients, no evaluation query, teacher vectors aligned."""

import numpy as np
import pytest

from training import datasets
from training.negatives import mine_teacher_negatives
from training.teacher import TeacherCache
from training.text import query_key
from training.trainset import DataConfig, build_training_data


def test_training_data_holds_only_training_queries_and_aligned_teacher_vectors():
    cfg = DataConfig(ict=50, bm25_negatives=False, holdout_pairs=40, max_pairs=100)
    data = build_training_data(cfg, seed=3)
    assert data.counts == {"pairs": 100, "triples": 2376, "ict": 50}
    assert len(data.examples) == 100 + 2376 + 50 and len(data.holdout) == 40
    evaluation = datasets.evaluation_query_texts()
    assert not [e for e in data.examples if query_key(e.query) in evaluation]
    held = {p.query for p in data.holdout}
    assert not [e for e in data.examples if e.query in held]  # validation pairs stay out
    assert data.teacher.shape == (len(data.examples), 3, 384)
    # Training queries always have a cached teacher vector, and it is the cached one.
    cache = TeacherCache.load()
    first = next(i for i, e in enumerate(data.examples) if e.source == "pairs")
    np.testing.assert_allclose(
        data.teacher[first, 0].astype(np.float32), cache.vector_of(data.examples[first].query)
    )
    # The same seed gives the same data.
    again = build_training_data(cfg, seed=3)
    assert [e.query for e in again.examples] == [e.query for e in data.examples]


def test_teacher_negatives_are_near_misses_never_the_answer_or_its_equals():
    unit = lambda *rows: np.array(rows, dtype=np.float32) / np.linalg.norm(rows, axis=1)[:, None]  # noqa: E731
    passages = unit([1, 0], [0.999, 0.04], [0.9, 0.43], [0.5, 0.87], [0, 1], [-1, 0])
    queries = unit([1, 0], [1, 0])
    mined = mine_teacher_negatives(queries, passages, np.array([0, 5]), depth=4, skip=0)
    # Query 0's answer is row 0; row 1 scores within the margin of it (a likely unjudged
    # positive), so the pick is a near miss among rows 2 and 3.
    assert mined[0] in (2, 3)
    # Query 1's "answer" is the passage the teacher likes least: everything else scores above
    # it, so nothing is safe to call irrelevant (-1: the caller falls back to random).
    assert mined[1] == -1


def test_inverse_cloze_spans_can_take_teacher_mined_negatives():
    cfg = DataConfig(
        pairs=False, triples=False, ict=40, ict_negatives="teacher", bm25_negatives=False
    )
    data = build_training_data(cfg, seed=5)
    assert data.counts == {"ict": 40}
    query, positive, negative = (data.teacher[:, i].astype(np.float32) for i in range(3))
    to_positive, to_negative = (query * positive).sum(1), (query * negative).sum(1)
    assert all(e.negative != e.positive for e in data.examples)
    # The filter keeps likely positives out; a span whose own passage the teacher ranks low has
    # no safe near miss and falls back to a random passage, which may score anywhere.
    assert (to_negative < to_positive).mean() >= 0.9
    # Mined, not random: the teacher ranks these negatives far above a random passage.
    random = build_training_data(DataConfig(**{**cfg.to_dict(), "ict_negatives": "random"}), 5)
    to_random = (random.teacher[:, 0] * random.teacher[:, 2]).astype(np.float32).sum(1)
    assert to_negative.mean() > to_random.mean() + 0.2


def test_bad_data_configuration_gets_a_clear_error():
    with pytest.raises(ValueError, match="ict"):
        DataConfig(ict=-1)
    with pytest.raises(ValueError, match="ict_negatives must be random or teacher"):
        DataConfig(ict_negatives="bm25")
