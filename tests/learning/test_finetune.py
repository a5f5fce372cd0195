"""The fine-tune's anchor: what the distillation terms hold the model to (docs/learning-loop.md)."""

from __future__ import annotations

import numpy as np
import pytest

from cluster.config import Settings
from learning.finetune import bm25_miner, fine_tune_config, parent_vectors
from training import datasets
from training.examples import Example
from training.model import QueryEncoder, load_model


def test_the_parent_anchor_is_the_parent_itself_except_for_the_queries_users_taught(
    tiny_version_dir,
):
    model, tokenizer = load_model(tiny_version_dir)
    examples = [
        Example("what is a clicked query", "the passage they clicked", "one shown above it"),
        Example("how do rivers form", "rivers form where water runs", "a passage on tax law"),
        Example("define photosynthesis", "plants turn light into sugar", "a recipe for bread"),
    ]

    vectors = parent_vectors(model, tokenizer, examples, feedback=1)

    assert vectors.shape == (3, 3, model.config.dim)
    assert np.isnan(vectors[0, 0]).all()  # the taught query is free to move
    assert np.isfinite(vectors[0, 1:]).all() and np.isfinite(vectors[1:]).all()
    served = QueryEncoder.load(tiny_version_dir).encode([e.query for e in examples[1:]])
    np.testing.assert_allclose(vectors[1:, 0].astype(np.float32), served, atol=2e-3)
    norms = np.linalg.norm(vectors[:, 1:].astype(np.float32), axis=-1)
    np.testing.assert_allclose(norms, 1.0, atol=2e-3)  # passage vectors as the index holds them


def test_mined_negatives_do_not_depend_on_the_order_events_arrived_in():
    """Concurrent users interleave their events; the same logs must give the same triplets."""
    rivers = [f"rivers and their valleys, chapter {i}" for i in range(8)]
    plants = [f"plants and their leaves, chapter {i}" for i in range(8)]
    collection = datasets.Collection(list(range(100, 116)), rivers + plants)
    rivers_q, plants_q = ("how do rivers form", {100}), ("why do plants have leaves", {108})

    for seed in range(10):  # one seed could agree by chance; ten cannot
        alone = bm25_miner(collection, seed)(*rivers_q)
        mine = bm25_miner(collection, seed)
        mine(*plants_q)
        after_another = mine(*rivers_q)

        assert alone == after_another
        assert alone in range(101, 108)  # on topic, and never the known positive


def test_the_passage_side_fine_tunes_at_its_own_share_of_the_lr_and_zero_freezes_it(
    tiny_version_dir,
):
    settings = Settings(reinforce_lr_scale=0.2, reinforce_passage_lr_scale=0.25)
    cfg = fine_tune_config(tiny_version_dir, settings)
    assert not cfg.query_tower_only and cfg.passage_lr_scale == 0.25

    frozen = fine_tune_config(tiny_version_dir, Settings(reinforce_passage_lr_scale=0))
    assert frozen.query_tower_only  # the index keeps the live version's passage vectors
    with pytest.raises(ValueError, match="reinforce_passage_lr_scale"):
        Settings(reinforce_passage_lr_scale=-0.1)
