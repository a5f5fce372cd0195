"""End to end on a slice: train → index → evaluate → publish, and serving's loaders read it."""

import json

import numpy as np
import pytest

from training import datasets
from training.evaluation.metrics import evaluate_run
from training.evaluation.runs import dense_run
from training.index import load_shards, read_index_meta
from training.model import QueryEncoder


def test_tiny_version_beats_random_ranking_by_a_clear_margin(tiny_version_dir):
    metrics = json.loads((tiny_version_dir / "metrics.json").read_text())
    passages = metrics["passages"]
    # One judged passage per dev query among `passages`: a random ranking's expected
    # R@100 is 100 / passages (0.05 here) and its MRR@10 about 2.9 / passages (0.0015).
    assert metrics["dev"]["R@100"] > 3 * 100 / passages
    assert metrics["dev"]["MRR@10"] > 5 * 2.93 / passages
    # The stored metrics are what the version really scores.
    again = evaluate_run(
        dense_run(tiny_version_dir, datasets.load_queries("dev")), datasets.load_qrels("dev")
    )
    assert again == pytest.approx(metrics["dev"], abs=1e-6)


def test_tiny_version_layout_and_serving_loaders(tiny_version_dir):
    for name in ("config.json", "tokenizer.json", "weights.pt", "metrics.json"):
        assert (tiny_version_dir / name).is_file(), name
    meta = read_index_meta(tiny_version_dir)
    shards = load_shards(tiny_version_dir, with_texts=True)
    assert len(shards) == meta["num_shards"] == 2
    ids = np.concatenate([s.ids for s in shards])
    assert len(ids) == len(set(ids.tolist())) == meta["count"] == 2000
    assert all(isinstance(i, str) for i in ids)
    texts = {}
    for shard in shards:
        texts.update(shard.text_of())
    encoder = QueryEncoder.load(tiny_version_dir)
    vectors = encoder.encode(["what is a botulism", "wifi"])
    assert vectors.shape == (2, meta["dim"]) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # A passage's own text, encoded as a query, finds that passage near the top.
    _, text = next(iter(texts.items()))
    scores, found = shards[0].search(encoder.encode([text]), 10)
    assert found.shape == (1, 10) and scores[0, 0] >= scores[0, -1]


def test_tiny_version_is_published_and_live(tiny_version, tmp_path):
    from cluster.artifacts import ArtifactStore

    settings, version, local_dir = tiny_version
    store = ArtifactStore.from_settings(settings)
    assert store.latest() == version
    manifest = store.manifest(version)
    assert (
        "index/shard-000.faiss" in manifest.files
        and "index/shard-001.ids.jsonl.gz" in manifest.files
    )
    assert manifest.metrics["dev"]["R@100"] > 0
    assert manifest.config["model"]["encoder"] == "rnn"
    copy = store.download(version, cache_dir=tmp_path)
    assert QueryEncoder.load(copy).encode(["hello"]).shape == (1, manifest.config["model"]["dim"])
