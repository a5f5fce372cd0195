"""A shard replica's overlay of written documents, on its own (the served path is
tests/deployments/test_documents.py): upserts, replacements, deletes, replays, compaction."""

from __future__ import annotations

import numpy as np

from cluster.corpora.document_log import DocumentOp
from cluster.corpora.documents import Document
from deployments import live_documents
from deployments.live_documents import Overlay, shard_of


def unit(i: int, dim: int = 8) -> np.ndarray:
    vector = np.zeros(dim, dtype=np.float32)
    vector[i % dim] = 1.0
    return vector


def upsert(seq: int, doc_id: str, text: str) -> DocumentOp:
    return DocumentOp(seq, doc_id, Document(doc_id, text))


def test_writes_replace_and_delete_and_a_replay_changes_nothing():
    overlay = Overlay(shard_id=0, num_shards=1, applied=0)
    ops = [upsert(1, "a", "apples are red"), upsert(2, "b", "bananas are yellow"),
           upsert(3, "a", "apricots are orange"), DocumentOp(4, "b", None)]  # fmt: skip
    overlay.apply(ops, {1: unit(0), 2: unit(1), 3: unit(2)})
    assert len(overlay) == 1 and overlay.text("a") == "apricots are orange"
    assert overlay.text("b") is None and overlay.stale == {"a", "b"}
    assert [d for _, d, _ in overlay.dense(unit(2)[None], 5)[0]] == ["a"]
    assert [d for _, d, _ in overlay.dense(unit(0)[None], 5)[0]] == ["a"]  # old row is dead
    assert overlay.lexical(["apricots"], 5)[0][1] == "a"
    assert overlay.lexical(["apples"], 5) == [] and overlay.lexical(["bananas"], 5) == []
    overlay.apply(ops, {1: unit(0), 2: unit(1), 3: unit(2)})  # seqs already applied
    assert len(overlay) == 1 and overlay.applied == 4


def test_each_upsert_lands_on_the_shard_its_id_hashes_to():
    overlays = [Overlay(shard_id=i, num_shards=3, applied=0) for i in range(3)]
    ops = [upsert(i + 1, f"doc-{i}", f"text {i}") for i in range(30)]
    for overlay in overlays:
        mine = overlay.needs_vectors(ops)
        overlay.apply(ops, {op.seq: unit(op.seq) for op in mine})
    assert sum(len(o) for o in overlays) == 30
    for i in range(30):
        holders = [o.shard_id for o in overlays if o.text(f"doc-{i}") is not None]
        assert holders == [shard_of(f"doc-{i}", 3)]


def test_compaction_keeps_every_live_document(monkeypatch):
    monkeypatch.setattr(live_documents, "COMPACT_FROM", 4)
    overlay = Overlay(shard_id=0, num_shards=1, applied=0)
    seq = 0
    for round_ in range(5):  # every document rewritten five times: dead rows pile up
        ops, vectors = [], {}
        for doc in range(3):
            seq += 1
            ops.append(upsert(seq, f"d{doc}", f"round {round_} doc {doc}"))
            vectors[seq] = unit(doc)
        overlay.apply(ops, vectors)
    assert len(overlay) == 3 and len(overlay._ids) < 15  # compacted on the way
    assert overlay.text("d1") == "round 4 doc 1"
    assert {d for _, d, _ in overlay.dense(unit(1)[None], 3)[0]} == {"d0", "d1", "d2"}
