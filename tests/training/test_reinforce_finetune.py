"""The fine-tune's anchor: what the distillation terms hold the model to (docs/learning-loop.md)."""

from __future__ import annotations

import numpy as np

from training.examples import Example
from training.model import QueryEncoder, load_model
from training.reinforce.finetune import parent_vectors


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
