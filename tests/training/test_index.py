"""Faiss shards: every kind finds exact neighbours on easy data, shards know their document
ids (strings), and versions written with integer pids still load."""

import numpy as np
import pytest

from training.index import IndexConfig, build_shards, load_shard, load_shards, search_shards


def vectors(n=300, d=16, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_shards_return_the_right_ids(tmp_path, kind):
    x = vectors()
    ids = [f"doc/{i}-é" for i in range(1000, 1300)]  # any string: slashes, accents
    texts = [f"passage {i}" for i in ids]
    cfg = IndexConfig(kind=kind, num_shards=3, ivf_nlist=4, ivf_nprobe=4)
    build_shards(x, ids, texts, tmp_path, cfg)
    shards = load_shards(tmp_path, with_texts=True)
    assert [len(s.ids) for s in shards] == [100, 100, 100]
    scores, found = search_shards(shards, x[[5, 250]], k=3)
    assert found[:, 0].tolist() == ["doc/1005-é", "doc/1250-é"]  # nearest neighbour: itself
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    assert shards[2].text_of()["doc/1250-é"] == "passage doc/1250-é"


def test_a_version_written_with_integer_pids_loads_them_as_string_ids(tmp_path):
    x = vectors(20)
    build_shards(x, [str(i) for i in range(500, 520)], ["t"] * 20, tmp_path, IndexConfig())
    for shard in range(2):  # rewrite as versions before string ids were: int64 pids.npy
        ids_file = tmp_path / "index" / f"shard-{shard:03d}.ids.jsonl.gz"
        np.save(ids_file.with_name(f"shard-{shard:03d}.pids.npy"), np.arange(500, 520)[shard::2])
        ids_file.unlink()
    shards = load_shards(tmp_path)
    assert shards[1].ids.tolist() == [str(i) for i in range(501, 520, 2)]


def test_bad_index_configuration_gets_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="index kind must be one of"):
        IndexConfig(kind="annoy")
    with pytest.raises(ValueError, match="num_shards must be a positive integer"):
        IndexConfig(num_shards=0)
    with pytest.raises(ValueError, match="ivf_nprobe"):
        IndexConfig(kind="ivf", ivf_nlist=4, ivf_nprobe=8)
    x = vectors(10)
    with pytest.raises(ValueError, match="exceeds the 10 passages"):
        build_shards(x, list("abcdefghij"), ["t"] * 10, tmp_path, IndexConfig(num_shards=11))
    with pytest.raises(ValueError, match="ivf_nlist=64 exceeds"):
        build_shards(x, list("abcdefghij"), ["t"] * 10, tmp_path, IndexConfig(kind="ivf"))
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
    build_shards(x, [str(i) for i in range(500)], ["t"] * 500, tmp_path, IndexConfig(num_shards=1))
    queries = vectors(n=batch, d=64, seed=1)
    scores, found = load_shard(tmp_path, 0).search(queries, k=10)
    exact = np.argsort(-(queries @ x.T), axis=1, kind="stable")[:, :10]
    assert found.tolist() == exact.astype(str).tolist()
    assert np.allclose(scores, np.take_along_axis(queries @ x.T, exact, axis=1), atol=1e-5)
