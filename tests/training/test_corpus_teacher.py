"""The teacher's vectors of a corpus the shipped cache has never seen: encoded by the real
teacher, stored beside the snapshot in the real S3 store, resumed after a SIGKILL, and read back
instead of encoded on the next training."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

from cluster.corpora.store import CorpusStore
from training.corpus_pipeline import load_corpus
from training.corpus_teacher import CHUNK, INSTALL_HINT, corpus_teacher, wanted_texts

WORDS = (
    "glacier harbour lantern meadow orchard quarry ridge saddle timber valley willow basalt "
    "canyon delta estuary fjord granite heath island jetty kelp lagoon marsh nettle"
).split()

# Runs corpus_teacher in a child process; argv: corpus name, snapshot. With "--no-teacher" the
# teacher's library is made unimportable (a real ImportError, as on an install without it).
CHILD = """
import sys
if "--no-teacher" in sys.argv:
    sys.modules["sentence_transformers"] = None
from cluster.config import get_settings
from cluster.corpora.store import CorpusStore
from training.corpus_pipeline import load_corpus
from training.corpus_teacher import corpus_teacher
settings = get_settings()
corpus = load_corpus(settings, sys.argv[1])
cache = corpus_teacher(CorpusStore.from_settings(settings), corpus.name, corpus.snapshot,
                       corpus.collection)
print("COUNTS", __import__("json").dumps(cache.meta["corpus"]))
"""


def _import(settings, tmp_path, name: str, documents: int) -> None:
    rng = random.Random(name)
    path = tmp_path / f"{name}.jsonl"
    with path.open("w") as out:
        for i in range(documents):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 30)))
            out.write(json.dumps({"id": f"{name}-{i}", "text": f"{text} {i}"}) + "\n")
    CorpusStore.from_settings(settings).import_file(path, name, progress=False)


def _chunks(settings, name: str) -> list[str]:
    store = CorpusStore.from_settings(settings)
    objects = store.client.list_objects(store.bucket, prefix=f"corpora/{name}/", recursive=True)
    return [o.object_name for o in objects if "/derived/teacher/" in o.object_name]


def _child(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def _counts(output: str) -> dict:
    line = next(x for x in output.splitlines() if x.startswith("COUNTS "))
    return json.loads(line.removeprefix("COUNTS "))


def test_a_new_corpus_is_encoded_once_and_read_back_from_its_snapshot(settings, tmp_path):
    _import(settings, tmp_path, "teacher-new", 60)
    corpus = load_corpus(settings, "teacher-new")
    store = CorpusStore.from_settings(settings)
    texts = wanted_texts(corpus.collection)

    first = corpus_teacher(store, corpus.name, corpus.snapshot, corpus.collection)
    assert first.meta["corpus"]["encoded"] == len(texts) and first.meta["corpus"]["shipped"] == 0
    vectors = np.stack([first.lookup(t) for t in texts])
    assert np.isfinite(vectors).all()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-2)
    assert len(_chunks(settings, "teacher-new")) == -(-len(texts) // CHUNK)

    second = corpus_teacher(store, corpus.name, corpus.snapshot, corpus.collection)
    assert second.meta["corpus"]["cached"] == len(texts) and second.meta["corpus"]["encoded"] == 0
    assert np.array_equal(np.stack([second.lookup(t) for t in texts]), vectors)


def test_a_killed_encoding_resumes_where_it_stopped(settings, tmp_path):
    _import(settings, tmp_path, "teacher-kill", 700)
    total = len(wanted_texts(load_corpus(settings, "teacher-kill").collection))
    assert total > 3 * CHUNK
    child = _child("teacher-kill")
    try:
        deadline = time.monotonic() + 180
        while not _chunks(settings, "teacher-kill") and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    stored = len(_chunks(settings, "teacher-kill"))
    assert 1 <= stored < -(-total // CHUNK), "killed after its first chunk, before its last"

    resumed = _child("teacher-kill")
    counts = _counts(resumed.communicate(timeout=300)[0])
    assert resumed.returncode == 0
    assert counts["cached"] == stored * CHUNK
    assert counts["cached"] + counts["encoded"] == total and counts["without"] == 0


def test_without_the_teacher_installed_the_corpus_trains_undistilled(settings, tmp_path):
    _import(settings, tmp_path, "teacher-none", 20)
    child = _child("teacher-none", "--no-teacher")
    out = child.communicate(timeout=120)[0]
    assert child.returncode == 0
    counts = _counts(out)
    assert counts["encoded"] == 0 and counts["cached"] == 0 and counts["without"] > 0
    assert INSTALL_HINT in out


def test_every_passage_stands_beside_its_span(settings, tmp_path):
    documents = 3
    _import(settings, tmp_path, "teacher-order", documents)
    collection = load_corpus(settings, "teacher-order").collection
    texts = wanted_texts(collection, ["a query of mine"])
    assert texts[0] == collection.texts[0] and texts[-1] == "a query of mine"
    assert set(collection.texts) <= set(texts) and len(texts) <= 2 * documents + 1
