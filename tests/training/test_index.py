"""Faiss shards: every kind finds exact neighbours on easy data, shards know their pids."""

import numpy as np
import pytest

from training.index import IndexConfig, build_shards, load_shard, load_shards, search_shards


def vectors(n=300, d=16, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_shards_return_the_right_pids(tmp_path, kind):
    x = vectors()
    pids = np.arange(1000, 1300)
    texts = [f"passage {p}" for p in pids]
    cfg = IndexConfig(kind=kind, num_shards=3, ivf_nlist=4, ivf_nprobe=4)
    build_shards(x, pids, texts, tmp_path, cfg)
    shards = load_shards(tmp_path, with_texts=True)
    assert [len(s.pids) for s in shards] == [100, 100, 100]
    scores, found = search_shards(shards, x[[5, 250]], k=3)
    assert found[:, 0].tolist() == [1005, 1250]  # each vector's nearest neighbour is itself
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    assert shards[2].text_of()[1250] == "passage 1250"


def test_bad_index_configuration_gets_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="index kind must be one of"):
        IndexConfig(kind="annoy")
    with pytest.raises(ValueError, match="num_shards must be a positive integer"):
        IndexConfig(num_shards=0)
    with pytest.raises(ValueError, match="ivf_nprobe"):
        IndexConfig(kind="ivf", ivf_nlist=4, ivf_nprobe=8)
    x = vectors(10)
    with pytest.raises(ValueError, match="exceeds the 10 passages"):
        build_shards(x, np.arange(10), ["t"] * 10, tmp_path, IndexConfig(num_shards=11))
    with pytest.raises(ValueError, match="ivf_nlist=64 exceeds"):
        build_shards(x, np.arange(10), ["t"] * 10, tmp_path, IndexConfig(kind="ivf"))
    build_shards(x, np.arange(10), ["t"] * 10, tmp_path, IndexConfig(num_shards=2))
    with pytest.raises(ValueError, match="out of range"):
        load_shard(tmp_path, 2)
    with pytest.raises(FileNotFoundError, match="has no index"):
        load_shards(tmp_path / "nothing")


@pytest.mark.parametrize("batch", [1, 2, 3, 32])
def test_flat_search_is_exact_for_any_batch_size(tmp_path, batch):
    """Batches of 3+ queries take Faiss's BLAS path (training/index.py), smaller ones its
    per-query scan: both must give the exact top k."""
    x = vectors(n=500, d=64)
    build_shards(x, np.arange(500), ["t"] * 500, tmp_path, IndexConfig(num_shards=1))
    queries = vectors(n=batch, d=64, seed=1)
    scores, found = load_shard(tmp_path, 0).search(queries, k=10)
    exact = np.argsort(-(queries @ x.T), axis=1, kind="stable")[:, :10]
    assert found.tolist() == exact.tolist()
    assert np.allclose(scores, np.take_along_axis(queries @ x.T, exact, axis=1), atol=1e-5)
