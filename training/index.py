"""Faiss shards of a version: the collection encoded by the passage tower, split N ways.

Layout inside a version folder::

    index/index.json            {"kind", "num_shards", "dim", "count", search-time params}
    index/shard-000.faiss       inner-product index over L2-normalised vectors (= cosine)
    index/shard-000.ids.jsonl.gz    document id of each row (one JSON string a line): row i
                                of the Faiss index is ids[i]; Faiss's integer rows never leave
                                this module
    index/shard-000.texts.jsonl.gz  passage text of each row (one JSON string a line), so a
                                shard can answer with text and serving needs no training data

Versions written before documents had string ids hold ``shard-000.pids.npy`` (int64) instead;
they load as the same ids, as strings.

``flat`` (exact) is the default; ``ivf`` (IndexIVFFlat, nlist/nprobe) and ``hnsw``
(IndexHNSWFlat, M/efConstruction/efSearch) trade exactness for speed on larger corpora.
Serving loads one shard per replica with :func:`load_shard`.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

INDEX_DIR = "index"
INDEX_KINDS = ("flat", "ivf", "hnsw")


@dataclass
class IndexConfig:
    kind: Literal["flat", "ivf", "hnsw"] = "flat"
    num_shards: int = 2
    ivf_nlist: int = 64  # clusters per shard
    ivf_nprobe: int = 8  # clusters visited per search
    hnsw_m: int = 32  # graph degree
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 64

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {self.kind!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "kind" and (not isinstance(value, int) or value < 1):
                raise ValueError(f"index {f.name} must be a positive integer, got {value!r}")
        if self.ivf_nprobe > self.ivf_nlist:
            raise ValueError(f"ivf_nprobe ({self.ivf_nprobe}) exceeds ivf_nlist ({self.ivf_nlist})")

    @classmethod
    def from_dict(cls, data: dict) -> IndexConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def shard_paths(index_dir: Path, shard: int) -> tuple[Path, Path, Path]:
    stem = f"shard-{shard:03d}"
    return (
        index_dir / f"{stem}.faiss",
        index_dir / f"{stem}.ids.jsonl.gz",
        index_dir / f"{stem}.texts.jsonl.gz",
    )


def write_strings(path: Path, strings: list[str]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(s, ensure_ascii=False) + "\n" for s in strings)


def read_strings(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _read_ids(ids_path: Path) -> np.ndarray:
    if ids_path.exists():
        return np.asarray(read_strings(ids_path), dtype=object)
    legacy = ids_path.with_name(ids_path.name.replace(".ids.jsonl.gz", ".pids.npy"))
    return np.asarray([str(p) for p in np.load(legacy).tolist()], dtype=object)


def _make_index(vectors: np.ndarray, cfg: IndexConfig) -> faiss.Index:
    dim = vectors.shape[1]
    if cfg.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif cfg.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = cfg.hnsw_ef_construction
        index.hnsw.efSearch = cfg.hnsw_ef_search
    else:
        if cfg.ivf_nlist > len(vectors):
            raise ValueError(
                f"ivf_nlist={cfg.ivf_nlist} exceeds the {len(vectors)} vectors of a shard; "
                "use fewer clusters or fewer shards"
            )
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, cfg.ivf_nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = cfg.ivf_nprobe
    index.add(vectors)
    return index


def build_shards(
    vectors: np.ndarray, ids: list[str], texts: list[str], version_dir: Path, cfg: IndexConfig
) -> list[Path]:
    """Split rows into ``cfg.num_shards`` contiguous shards and write them under index/."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = [str(i) for i in ids]
    if not len(vectors) == len(ids) == len(texts):
        raise ValueError(f"{len(vectors)} vectors, {len(ids)} ids and {len(texts)} texts")
    if cfg.num_shards > len(vectors):
        raise ValueError(f"num_shards={cfg.num_shards} exceeds the {len(vectors)} passages")
    index_dir = Path(version_dir) / INDEX_DIR
    index_dir.mkdir(parents=True, exist_ok=True)
    written = []
    bounds = np.linspace(0, len(vectors), cfg.num_shards + 1).astype(int)
    for shard, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        index_path, ids_path, texts_path = shard_paths(index_dir, shard)
        faiss.write_index(_make_index(vectors[start:stop], cfg), str(index_path))
        write_strings(ids_path, ids[start:stop])
        write_strings(texts_path, texts[start:stop])
        written += [index_path, ids_path, texts_path]
    meta = {**asdict(cfg), "dim": int(vectors.shape[1]), "count": int(len(vectors))}
    (index_dir / "index.json").write_text(json.dumps(meta, indent=2) + "\n")
    return written


def read_index_meta(version_dir: Path) -> dict:
    path = Path(version_dir) / INDEX_DIR / "index.json"
    if not path.exists():
        raise FileNotFoundError(f"{version_dir} has no index (missing {path})")
    return json.loads(path.read_text())


# An exact search of 3 or more queries is one matrix product (BLAS) that streams the shard's
# vectors once. Faiss's own threshold is nq * d >= 128,000 elements (334 queries at d = 384),
# far above serving's batches, and below it Faiss scans the whole shard again for every query.
# A lone query is faster without BLAS; the crossover, measured on one core, is where this
# constant sits (docs/results/serving.md, "HAProxy and batched flat search").
BLAS_FROM_QUERIES = 3


def use_blas_from(queries: int, dim: int) -> None:
    faiss.cvar.distance_compute_blas_threshold = queries * dim


@dataclass
class Shard:
    """One loaded shard: a Faiss index and the document id of each of its rows."""

    index: faiss.Index
    ids: np.ndarray  # object array of str
    texts: list[str] | None = None  # row-aligned with ids when loaded with_texts

    def text_of(self) -> dict[str, str]:
        if self.texts is None:
            raise ValueError("this shard was loaded without texts")
        return dict(zip(self.ids.tolist(), self.texts, strict=True))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores (n, k'), ids (n, k')) best first; k' = min(k, shard size). A missing hit
        (IVF/HNSW may return fewer than k) has score -inf and id None."""
        k = min(k, len(self.ids))
        use_blas_from(BLAS_FROM_QUERIES, self.index.d)
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        found = rows >= 0
        return np.where(found, scores, -np.inf), np.where(found, self.ids[rows], None)


def load_shard(version_dir: Path, shard: int, with_texts: bool = False) -> Shard:
    meta = read_index_meta(version_dir)
    if not 0 <= shard < meta["num_shards"]:
        raise ValueError(f"shard {shard} out of range: this version has {meta['num_shards']}")
    index_path, ids_path, texts_path = shard_paths(Path(version_dir) / INDEX_DIR, shard)
    index = faiss.read_index(str(index_path))
    if meta["kind"] == "ivf":
        faiss.extract_index_ivf(index).nprobe = meta["ivf_nprobe"]
    elif meta["kind"] == "hnsw":
        index.hnsw.efSearch = meta["hnsw_ef_search"]
    ids = _read_ids(ids_path)
    if index.ntotal != len(ids):
        raise ValueError(f"{index_path}: {index.ntotal} vectors but {len(ids)} ids")
    texts = read_strings(texts_path) if with_texts else None
    return Shard(index, ids, texts)


def load_shards(version_dir: Path, with_texts: bool = False) -> list[Shard]:
    count = read_index_meta(version_dir)["num_shards"]
    return [load_shard(version_dir, i, with_texts) for i in range(count)]


def search_shards(
    shards: list[Shard], queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Search every shard and merge: (scores (n, k), ids (n, k)), best first."""
    results = [shard.search(queries, k) for shard in shards]
    scores = np.concatenate([s for s, _ in results], axis=1)
    ids = np.concatenate([d for _, d in results], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
