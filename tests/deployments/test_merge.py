"""Merging per-shard top-k lists gives exactly the ranking of one index over all passages."""

from __future__ import annotations

import numpy as np
import pytest

from deployments.merge import fuse_hits, merge_topk
from deployments.shard import LoadedShard
from training.index import IndexConfig, build_shards, load_shard
from training.model import QueryEncoder


@pytest.fixture(scope="module")
def corpus(tiny_version_dir):
    """(vectors, ids, texts) of the tiny version's whole collection, and some query vectors."""
    shards = [load_shard(tiny_version_dir, i, with_texts=True) for i in range(2)]
    vectors = np.concatenate([s.index.reconstruct_n(0, s.index.ntotal) for s in shards])
    ids = np.concatenate([s.ids for s in shards])
    texts = [t for s in shards for t in s.texts]
    queries = QueryEncoder.load(tiny_version_dir).encode(
        ["what is a botulism", "how long to boil an egg", "symptoms of flu", "capital of france"]
    )
    return vectors, ids, texts, queries


@pytest.mark.parametrize("num_shards", [1, 2, 4])
def test_merged_shards_rank_like_one_index(corpus, num_shards, tmp_path):
    vectors, ids, texts, queries = corpus
    build_shards(vectors, ids.tolist(), texts, tmp_path, IndexConfig(num_shards=num_shards))
    shards = [LoadedShard.load(tmp_path, i) for i in range(num_shards)]
    assert sum(len(s) for s in shards) == len(ids)

    exact_scores = queries @ vectors.T  # one "index" over everything, brute force
    for q, query in enumerate(queries):
        merged = merge_topk((s.dense(query[None], 10)[0] for s in shards), 10)
        expected = np.argsort(-exact_scores[q], kind="stable")[:10]
        assert [d for _, d, _ in merged] == ids[expected].tolist()
        np.testing.assert_allclose([s for s, _, _ in merged], exact_scores[q][expected], rtol=1e-5)
        # each hit carries its own passage's text
        assert all(text == texts[int(np.flatnonzero(ids == d)[0])] for _, d, text in merged)


def test_merge_breaks_ties_by_doc_id_whatever_the_shard_order():
    a = [(0.9, "7", "a"), (0.5, "3", "b")]
    b = [(0.9, "2", "c"), (0.1, "9", "d")]
    assert merge_topk([a, b], 3) == merge_topk([b, a], 3) == [b[0], a[0], a[1]]


def test_fusion_rewards_passages_both_rankings_like():
    dense = [(0.9, "1", "x"), (0.8, "2", "y"), (0.7, "3", "z")]
    lexical = [(12.0, "3", "z"), (11.0, "4", "w"), (10.0, "1", "x")]
    fused = fuse_hits(dense, lexical, 0.5, 4)
    # 1: 0.5·1 + 0.5·0 = 0.5; 3: 0.5·0 + 0.5·1 = 0.5; 2: 0.25; 4: 0.25 (ties: smaller id)
    assert [d for _, d, _ in fused] == ["1", "3", "2", "4"]
    assert [text for _, _, text in fused] == ["x", "z", "y", "w"]
    assert fused[0][0] == pytest.approx(0.5) and fused[2][0] == pytest.approx(0.25)


def test_fusion_weight_moves_the_ranking_between_the_sides():
    dense = [(0.9, "1", "a"), (0.1, "2", "b")]
    lexical = [(9.0, "2", "b"), (1.0, "1", "a")]
    assert [d for _, d, _ in fuse_hits(dense, lexical, 0.8, 2)] == ["1", "2"]
    assert [d for _, d, _ in fuse_hits(dense, lexical, 0.2, 2)] == ["2", "1"]
    assert [d for _, d, _ in fuse_hits(dense, lexical, 1.0, 2)] == ["1", "2"]
    with pytest.raises(ValueError, match="dense_weight"):
        fuse_hits(dense, lexical, 1.5, 2)
