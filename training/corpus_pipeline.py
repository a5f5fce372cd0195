"""Build a version over a user's corpus with no labelled queries (`twotower train --corpus`).

Self-supervision stands in for labels (training/corpus_trainset.py): pseudo-queries cut from the
corpus, BM25 neighbours as their negatives, and the teacher's vectors of the corpus (computed
once per snapshot, training/corpus_teacher.py) for distillation. Serving adds BM25 over the
same passages for hybrid search. Two starts:

- ``scratch``: a tokenizer vocabulary and word2vec trained on the corpus, then a new model of
  the profile's architecture;
- ``release``: transfer. The shipped MS MARCO release version (its tokenizer and weights) is
  fine-tuned on the corpus's pseudo-queries for ``TRANSFER_EPOCHS``: much faster, and it keeps
  what the release learnt from labelled MS MARCO queries.

Labelled queries and qrels, when the user has them, are trained on (a fifth held out and
evaluated, :func:`split_labels`), or only evaluated.
The version's manifest names the corpus snapshot it indexes, so rolling it out switches the live
corpus together with the model.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cluster.config import Settings
from cluster.corpora.document_log import DocumentLog
from cluster.corpora.store import CorpusStore
from training import release
from training.bm25 import BM25Index
from training.corpus_teacher import corpus_teacher
from training.corpus_trainset import build_corpus_data
from training.datasets import Collection
from training.examples import ExampleSet
from training.model import ModelConfig, TwoTower, load_model, read_config
from training.pipeline import (
    Laps,
    Profile,
    finish_version,
    fit_model,
    get_profile,
    holdout_validator,
    provenance,
    store_built,
    with_overrides,
)
from training.teacher import TeacherCache
from training.text import Tokenizer, query_key
from training.train import TrainConfig, seed_everything
from training.word2vec import embedding_matrix, train_word2vec

STARTS = ("scratch", "release")
TRANSFER_EPOCHS = 2

EvalSets = dict[str, tuple[dict[str, str], dict[str, dict[str, int]]]]


@dataclass(frozen=True)
class CorpusSource:
    """One snapshot of an imported corpus with every API write up to ``watermark`` folded in,
    as the model sees it (title + text per document)."""

    name: str
    snapshot: str
    collection: Collection
    watermark: int = 0  # the last document-log seq folded in: serving replays the later ones

    def describe(self) -> dict:
        return {"name": self.name, "snapshot": self.snapshot, "count": len(self.collection)}


def load_corpus(settings: Settings, name: str, snapshot: str | None = None) -> CorpusSource:
    store = CorpusStore.from_settings(settings)
    snapshot = store.manifest(name, snapshot)["snapshot"]
    documents = {doc.id: doc for doc in store.documents(name, snapshot)}
    with DocumentLog(settings) as log:
        watermark = log.head(name)
        for op in log.replay(name, 0, watermark):  # writes through the API, in order
            if op.document is None:
                documents.pop(op.doc_id, None)
            else:
                documents[op.doc_id] = op.document
    collection = Collection(list(documents), [d.passage for d in documents.values()])
    return CorpusSource(name, snapshot, collection, watermark)


LABELS_HELD_OUT = 0.2  # of the user's labelled queries: never trained on, reported as "heldout"


def split_labels(
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    collection: Collection,
    evaluation: dict[str, str] | None = None,
) -> tuple[list[tuple[str, str]], tuple[dict, dict]]:
    """The user's labelled queries as (training pairs, held-out evaluation set). A query is
    held out by a stable hash of its text; queries of ``evaluation`` are never trained on."""
    text_of = collection.text_of()
    guard = {query_key(q) for q in (evaluation or {}).values()}
    pairs, held_queries, held_qrels = [], {}, {}
    for qid, query in queries.items():
        judged = qrels.get(qid, {})
        if not any(rel > 0 for rel in judged.values()):
            continue
        digest = hashlib.sha256(query_key(query).encode()).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 < LABELS_HELD_OUT:
            held_queries[qid], held_qrels[qid] = query, judged
        elif query_key(query) not in guard:
            pairs += [(query, text_of[d]) for d, rel in judged.items() if rel > 0 and d in text_of]
    return pairs, (held_queries, held_qrels)


def _teacher(
    settings: Settings, profile: Profile, corpus: CorpusSource, labelled, log
) -> TeacherCache | None:
    """The teacher's vectors of this corpus (computed once per snapshot), unless the profile
    turns distillation off."""
    if not profile.data.teacher:
        return None
    store = CorpusStore.from_settings(settings)
    queries = [query for query, _ in labelled]
    return corpus_teacher(store, corpus.name, corpus.snapshot, corpus.collection, queries, log=log)


def _scratch_model(profile: Profile, texts: list[str], seed: int, lap) -> tuple:
    """A new model whose vocabulary and word2vec come from ``texts``: the corpus, and the
    user's labelled training queries when there are some (their words are the queries')."""
    tokenizer = Tokenizer.build(texts, profile.vocab_min_count)
    w2v = train_word2vec(texts, profile.word2vec, seed)
    model_cfg = ModelConfig(
        vocab_size=len(tokenizer), embed_dim=profile.word2vec.dim, **profile.model
    )
    model = TwoTower(model_cfg, embedding_matrix(w2v, tokenizer, seed))
    lap("word2vec")
    return model, tokenizer, TrainConfig.from_dict({**profile.train.to_dict(), "seed": seed})


def _release_model(parent_dir: Path, seed: int) -> tuple:
    model, tokenizer = load_model(parent_dir)
    parent = read_config(parent_dir).get("training", {}).get("train", {})
    cfg = TrainConfig.from_dict(
        {**parent, "epochs": TRANSFER_EPOCHS, "seed": seed, "warmup_steps": 10}
    )
    return model, tokenizer, cfg


def build_corpus_version(
    settings: Settings,
    profile: Profile,
    corpus: CorpusSource,
    out_dir: Path,
    start: str = "scratch",
    eval_sets: EvalSets | None = None,
    labelled: list[tuple[str, str]] = (),
    log=print,
) -> dict:
    """Train on ``corpus`` from ``start`` (and on the ``labelled`` pairs the user has) and
    write a complete version folder; returns its metrics (``eval_sets`` evaluated)."""
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, not {start!r}")
    seed = settings.seed
    seed_everything(seed)
    lap = Laps(f"{corpus.name}/{start}", log)
    collection = corpus.collection
    with tempfile.TemporaryDirectory(prefix="twotower-parent-") as parent:
        if start == "scratch":
            texts = collection.texts + [query for query, _ in labelled]
            model, tokenizer, cfg = _scratch_model(profile, texts, seed, lap)
        else:
            release.unpack_model(release.RELEASE_DIR, Path(parent))
            model, tokenizer, cfg = _release_model(Path(parent), seed)
            lap("release")
    bm25 = BM25Index.build(collection.ids, collection.texts, progress=True)
    teacher = _teacher(settings, profile, corpus, labelled, log)
    lap("teacher")
    data = build_corpus_data(collection, profile.data, seed, bm25, teacher, labelled)
    examples = ExampleSet.build(data.examples, tokenizer, model.config, data.teacher)
    validator = holdout_validator(data, collection, tokenizer, model.config)
    lap("examples")
    history = fit_model(settings, model, examples, cfg, validator, out_dir.name, log)
    lap("train")
    training_info = {
        **provenance(settings, profile),
        "start": start,
        "corpus": corpus.describe(),
        "train": cfg.to_dict(),
        "examples": data.counts,
        "teacher": teacher.meta if teacher is not None else None,
        "history": history,
    }
    return finish_version(
        out_dir, model, tokenizer, collection, profile.index, training_info, eval_sets or {}, lap
    )


def train_corpus_and_publish(
    settings: Settings,
    name: str,
    snapshot: str | None = None,
    start: str = "release",
    profile_name: str | None = None,
    overrides: list[str] | None = None,
    eval_sets: EvalSets | None = None,
    publish: bool = True,
    labels: tuple[dict[str, str], dict[str, dict[str, int]]] | None = None,
) -> str:
    """Build a version over corpus ``name`` (its newest snapshot unless named), store it with
    the corpus in its manifest, publish it unless told not to; returns its id. ``labels``
    (queries, qrels) are trained on, but for a held-out fifth evaluated as ``heldout``."""
    profile = with_overrides(get_profile(profile_name or settings.profile), overrides or [])
    corpus = load_corpus(settings, name, snapshot)
    eval_sets, pairs = dict(eval_sets or {}), []
    if labels is not None:
        evaluation = {q: t for queries, _ in eval_sets.values() for q, t in queries.items()}
        pairs, heldout = split_labels(*labels, corpus.collection, evaluation)
        if heldout[0]:
            eval_sets["heldout"] = heldout

    def build(out: Path) -> dict:
        return build_corpus_version(settings, profile, corpus, out, start, eval_sets, pairs)

    extra = {
        "profile": profile.name,
        "corpus": corpus.describe(),
        "start": start,
        "documents_watermark": corpus.watermark,
    }
    return store_built(settings, build, extra, publish)
