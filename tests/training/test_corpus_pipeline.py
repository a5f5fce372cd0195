"""A user's corpus with no labelled queries: imported into the real S3 store, trained end to
end from scratch and by transfer from the release, and scored on judgments it never saw."""

from __future__ import annotations

import json

import pytest

from cluster.artifacts import ArtifactStore
from cluster.corpora.store import CorpusStore
from training import datasets
from training.corpus_pipeline import (
    build_corpus_version,
    load_corpus,
    split_labels,
    train_corpus_and_publish,
)
from training.pipeline import get_profile, with_overrides

PASSAGES = 1500
# A small, fast profile: what is measured is that self-supervision learns, not how well.
SMALL = [
    "data.ict=1400",
    "data.holdout_pairs=100",
    "train.epochs=10",
    "train.lr=0.003",
    "train.embedding_lr=0.003",
    "word2vec.epochs=10",
]


def random_mrr10(n: int) -> float:
    """MRR@10 of a random ranking of n documents with one relevant: sum of 1/r * 1/n."""
    return sum(1 / r for r in range(1, 11)) / n


@pytest.fixture(scope="module")
def corpus(settings, tmp_path_factory):
    """A slice of MS MARCO as a user would bring it: JSONL with string ids of their own."""
    collection = datasets.judged_slice(PASSAGES)
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for pid, text in zip(collection.ids, collection.texts, strict=True):
            out.write(json.dumps({"id": f"doc-{pid}", "text": text}) + "\n")
    report = CorpusStore.from_settings(settings).import_file(path, "slice", progress=False)
    assert report.snapshot and report.count == PASSAGES
    queries = datasets.load_queries("dev")
    qrels = {
        qid: {f"doc-{pid}": rel for pid, rel in docs.items()}
        for qid, docs in datasets.load_qrels("dev").items()
    }
    return report.snapshot, {"dev": (queries, qrels)}


def test_scratch_training_on_a_corpus_without_labels_beats_random(settings, corpus, tmp_path):
    snapshot, evals = corpus
    local = settings.model_copy(update={"train_executor": "local"})
    source = load_corpus(local, "slice")
    assert source.snapshot == snapshot and source.collection.ids[0].startswith("doc-")
    profile = with_overrides(get_profile("micro"), SMALL)
    metrics = build_corpus_version(local, profile, source, tmp_path / "v", "scratch", evals)
    mrr = metrics["dev"]["MRR@10"]
    print(f"\nscratch, no labels, {PASSAGES} passages: dev MRR@10 {mrr:.3f} "
          f"(random {random_mrr10(PASSAGES):.4f})")  # fmt: skip
    assert mrr > 20 * random_mrr10(PASSAGES)
    config = json.loads((tmp_path / "v" / "config.json").read_text())
    assert config["training"]["corpus"] == {
        "name": "slice",
        "snapshot": snapshot,
        "count": PASSAGES,
    }
    assert config["training"]["examples"]["ict"] > 1000


def test_transfer_from_the_release_is_stored_naming_its_corpus(settings, corpus):
    snapshot, evals = corpus
    local = settings.model_copy(update={"train_executor": "local"})
    version = train_corpus_and_publish(
        local, "slice", start="release", overrides=["data.ict=400", "data.holdout_pairs=50"],
        eval_sets=evals, publish=False,
    )  # fmt: skip
    store = ArtifactStore.from_settings(local)
    manifest = store.manifest(version)
    assert manifest.extra["corpus"] == {"name": "slice", "snapshot": snapshot, "count": PASSAGES}
    assert manifest.extra["start"] == "release" and store.latest() != version
    mrr = manifest.metrics["dev"]["MRR@10"]
    print(f"\ntransfer from the release, {PASSAGES} passages: dev MRR@10 {mrr:.3f}")
    assert mrr > 50 * random_mrr10(PASSAGES)


def test_labelled_queries_are_trained_on_but_a_held_out_fifth_is_only_evaluated(settings, corpus):
    _, evals = corpus
    dev_queries, dev_qrels = evals["dev"]
    local = settings.model_copy(update={"train_executor": "local"})
    source = load_corpus(local, "slice")
    pairs, (held_queries, held_qrels) = split_labels(dev_queries, dev_qrels, source.collection)
    assert pairs and held_queries and set(held_queries) == set(held_qrels)
    assert 0.1 < len(held_queries) / len(dev_queries) < 0.3
    trained = {query for query, _ in pairs}
    assert not trained & set(held_queries.values())
    # An evaluation set's queries are never trained on, whatever the split says.
    guarded, _ = split_labels(dev_queries, dev_qrels, source.collection, dev_queries)
    assert guarded == []

    version = train_corpus_and_publish(
        local, "slice", start="scratch", profile_name="micro",
        overrides=["data.ict=300", "data.holdout_pairs=50", "train.epochs=2"],
        publish=False, labels=(dev_queries, dev_qrels),
    )  # fmt: skip
    store = ArtifactStore.from_settings(local)
    assert "heldout" in store.manifest(version).metrics
    config = json.loads((store.download(version) / "config.json").read_text())
    assert config["training"]["examples"]["labelled"] == len(pairs)
