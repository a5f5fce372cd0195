"""Training sets: the right ingredients, no evaluation query, teacher vectors aligned."""

import numpy as np
import pytest

from training import datasets
from training.teacher import TeacherCache
from training.trainset import DataConfig, build_training_data


def test_training_data_holds_only_training_queries_and_aligned_teacher_vectors():
    cfg = DataConfig(ict=50, bm25_negatives=False, holdout_pairs=40, max_pairs=100)
    data = build_training_data(cfg, seed=3)
    assert data.counts == {"pairs": 100, "triples": 2376, "ict": 50}
    assert len(data.examples) == 100 + 2376 + 50 and len(data.holdout) == 40
    evaluation = datasets.evaluation_query_texts()
    assert not [e for e in data.examples if e.query.strip().lower() in evaluation]
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


def test_bad_data_configuration_gets_a_clear_error():
    with pytest.raises(ValueError, match="ict"):
        DataConfig(ict=-1)
