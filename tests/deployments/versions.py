"""Test helpers: a second version derived from the tiny one, and in-process rankings."""

from __future__ import annotations

import shutil
from pathlib import Path

import faiss
import numpy as np
import torch

from training.index import INDEX_DIR, load_shards, search_shards, shard_paths
from training.model import WEIGHTS_FILE, QueryEncoder


def derive_version(source: Path, target: Path, seed: int = 1) -> Path:
    """A different but complete version: the query tower's output and every passage vector
    are negated (so a vector of one version searched against the other's index ranks
    upside down), and each shard's vectors are shuffled between its passages (so the two
    versions rank different passages first)."""
    shutil.copytree(source, target)
    (target / "manifest.json").unlink(missing_ok=True)
    weights = target / WEIGHTS_FILE
    state = torch.load(weights, map_location="cpu", weights_only=True)
    for name in ("query_tower.project.weight", "query_tower.project.bias"):
        state[name] = -state[name]
    torch.save(state, weights)
    rng = np.random.default_rng(seed)
    shard = 0
    while (path := shard_paths(target / INDEX_DIR, shard)[0]).exists():
        index = faiss.read_index(str(path))
        vectors = -index.reconstruct_n(0, index.ntotal)
        shuffled = faiss.IndexFlatIP(vectors.shape[1])
        shuffled.add(np.ascontiguousarray(vectors[rng.permutation(len(vectors))]))
        faiss.write_index(shuffled, str(path))
        shard += 1
    return target


def rankings(version_dir: Path, queries: list[str], k: int = 10) -> dict[str, list[str]]:
    """query -> top-k document ids, computed in-process exactly as serving ranks."""
    encoder, shards = QueryEncoder.load(version_dir), load_shards(version_dir)
    _, ids = search_shards(shards, encoder.encode(queries), k)
    return {q: row.tolist() for q, row in zip(queries, ids, strict=True)}
