"""Teacher vectors for an imported corpus, computed once per snapshot (`twotower train --corpus`).

The shipped cache (training/teacher.py) holds MS MARCO; a user's corpus needs vectors of its own
for distillation: one per passage and one per inverse-cloze span (the pseudo-queries
training/corpus_trainset.py cuts), plus the user's labelled queries. They are encoded in chunks,
and each finished chunk is stored beside the snapshot in the artifact store
(``corpora/<name>/<snapshot>/derived/teacher/<hash>.npy``), named by a hash of the teacher and
the chunk's texts. So a killed run resumes at its first missing chunk, a second training on the
same snapshot encodes nothing, and any training machine finds the vectors. Texts the shipped
cache holds are never encoded again.

The teacher comes from the optional ``teacher`` extra. Without it, whatever chunks are already
stored are still used, the rest of the corpus trains without distillation, and the log says how
to add the extra.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable

import numpy as np
from tqdm import tqdm

from cluster.corpora.store import CorpusStore
from training.datasets import Collection
from training.pseudo_queries import inverse_cloze_spans
from training.teacher import (
    MAX_SEQ_LENGTH,
    SPAN_SEED,
    TEACHER_DIR,
    TEACHER_MODEL,
    TeacherCache,
    load_teacher_model,
)

CHUNK = 256  # texts a stored chunk: what a killed run can lose
INSTALL_HINT = ".venv/bin/pip install -e '.[teacher]'"


def wanted_texts(collection: Collection, queries: Iterable[str] = ()) -> list[str]:
    """Every text corpus training may ask the teacher about, deduplicated, each passage
    beside its span so that a partly encoded corpus has both for the rows it covers."""
    spans = inverse_cloze_spans(collection.texts, SPAN_SEED)
    ordered: dict[str, None] = {}
    for passage, span in zip(collection.texts, spans, strict=True):
        ordered.setdefault(passage, None)
        if span.strip():
            ordered.setdefault(span, None)
    for query in queries:
        ordered.setdefault(query, None)
    return list(ordered)


def chunk_key(texts: list[str]) -> str:
    digest = hashlib.sha256(f"{TEACHER_MODEL}/{MAX_SEQ_LENGTH}".encode())
    for text in texts:
        digest.update(b"\0" + text.encode())
    return f"teacher/{digest.hexdigest()[:32]}.npy"


class ChunkStore:
    """A snapshot's stored teacher chunks (float16 arrays, one row a text)."""

    def __init__(self, store: CorpusStore, name: str, snapshot: str) -> None:
        self.store, self.name, self.snapshot = store, name, snapshot

    def get(self, key: str) -> np.ndarray | None:
        raw = self.store.derived(self.name, self.snapshot, key)
        return None if raw is None else np.load(io.BytesIO(raw)).astype(np.float32)

    def put(self, key: str, vectors: np.ndarray) -> np.ndarray:
        """Store ``vectors``; returns them as stored, so a run that encoded a chunk and one
        that read it back see the same numbers."""
        stored = vectors.astype(np.float16)
        buffer = io.BytesIO()
        np.save(buffer, stored)
        self.store.put_derived(self.name, self.snapshot, key, buffer.getvalue())
        return stored.astype(np.float32)


def encode_missing(
    texts: list[str], chunks: ChunkStore, load_model: Callable = load_teacher_model, log=print
) -> tuple[list[str], np.ndarray, dict]:
    """(texts with a vector, their vectors, counts): stored chunks are read, the others encoded
    and stored one at a time. Without the teacher installed, only stored chunks count."""
    done_texts, parts, counts = [], [], {"cached": 0, "encoded": 0, "without": 0}
    model, unavailable = None, None
    bar = tqdm(total=len(texts), unit="text", desc="teacher", mininterval=2)
    for start in range(0, len(texts), CHUNK):
        batch = texts[start : start + CHUNK]
        key = chunk_key(batch)
        vectors = chunks.get(key)
        if vectors is not None:
            counts["cached"] += len(batch)
        elif unavailable is None:
            try:
                model = model or load_model()
            except ImportError as err:
                unavailable = err
        if vectors is None and model is not None:
            vectors = model.encode(batch, batch_size=64, normalize_embeddings=True)
            vectors = chunks.put(key, vectors)
            counts["encoded"] += len(batch)
        if vectors is None:
            counts["without"] += len(batch)
        else:
            done_texts += batch
            parts.append(np.asarray(vectors, dtype=np.float32))
        bar.update(len(batch))
    bar.close()
    if unavailable is not None and counts["without"]:
        log(
            f"teacher: not installed ({unavailable.name or unavailable}), so {counts['without']} "
            f"of {len(texts)} texts train without distillation; `{INSTALL_HINT}` adds it"
        )
    vectors = np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)
    return done_texts, vectors, counts


def corpus_teacher(
    store: CorpusStore,
    name: str,
    snapshot: str,
    collection: Collection,
    queries: Iterable[str] = (),
    load_model: Callable = load_teacher_model,
    log=print,
) -> TeacherCache:
    """The shipped teacher cache extended with this corpus's texts (encoded, or read from the
    snapshot's stored chunks)."""
    shipped = TeacherCache.load(TEACHER_DIR)
    wanted = wanted_texts(collection, queries)
    missing = [t for t in wanted if np.isnan(shipped.lookup(t)[0])]
    texts, vectors, counts = encode_missing(
        missing, ChunkStore(store, name, snapshot), load_model, log
    )
    counts["shipped"] = len(wanted) - len(missing)
    return shipped.extended(
        texts, vectors, {"corpus": {"name": name, "snapshot": snapshot, **counts}}
    )
