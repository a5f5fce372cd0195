"""A seconds-fast version on a slice of the corpus, for tests and smoke checks.

Same code path as a real version (tokenizer, word2vec, TwoTower, losses, Faiss shards,
evaluation, version layout), only smaller and trained in-process instead of on Ray Train.
The slice holds every passage judged for a dev query plus the first others of the corpus, so
dev retrieval on the slice is meaningful. Training uses training pairs and inverse-cloze spans
of the slice: never a dev, DL19, test or DL20 query.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from training import datasets
from training.examples import Example, ExampleSet
from training.index import IndexConfig
from training.model import ModelConfig, TwoTower
from training.pseudo_queries import inverse_cloze_spans
from training.text import Tokenizer
from training.train import TrainConfig, fit_local, seed_everything
from training.version import write_version
from training.word2vec import Word2VecConfig, embedding_matrix, train_word2vec


def corpus_slice(passages: int) -> datasets.Collection:
    """Every dev-judged passage, then the corpus in order, up to ``passages`` passages."""
    full = datasets.load_collection()
    wanted = {doc_id for docs in datasets.load_qrels("dev").values() for doc_id in docs}
    rows = [i for i, doc_id in enumerate(full.ids) if doc_id in wanted]
    taken = set(rows)
    rows += [i for i in range(len(full)) if i not in taken][: max(0, passages - len(rows))]
    rows = sorted(rows[:passages])
    return datasets.Collection([full.ids[i] for i in rows], [full.texts[i] for i in rows])


def tiny_examples(
    collection: datasets.Collection, pairs: int, seed: int, ict: int | None = None
) -> list[Example]:
    rng = random.Random(seed)
    examples = [
        Example(span, text, rng.choice(collection.texts), source="ict")
        for span, text in zip(
            inverse_cloze_spans(collection.texts, seed), collection.texts, strict=True
        )
    ][:ict]
    examples += [
        Example(pair.query, pair.positive, rng.choice(collection.texts), source="pairs")
        for pair in datasets.load_train_pairs()[:pairs]
    ]
    return examples


def build_tiny_version(
    directory: Path,
    passages: int = 2000,
    pairs: int = 400,
    epochs: int = 2,
    ict: int = 1200,
    num_shards: int = 2,
    encoder: str = "rnn",
    seed: int = 13,
    log=print,
) -> dict:
    """Train and write a small version folder; returns its metrics (dev on the slice)."""
    started = time.time()
    seed_everything(seed)
    collection = corpus_slice(passages)
    examples = tiny_examples(collection, pairs, seed, ict)
    tokenizer = Tokenizer.build(collection.texts + [e.query for e in examples], min_count=2)
    w2v_cfg = Word2VecConfig(dim=48, epochs=5, window=5)
    w2v = train_word2vec(collection.texts + [e.query for e in examples], w2v_cfg, seed, False)
    model_cfg = ModelConfig(
        vocab_size=len(tokenizer),
        embed_dim=w2v_cfg.dim,
        encoder=encoder,
        hidden_dim=32,
        dim=48,
        max_passage_len=40,
        next_token_cutoffs=[500],
    )
    model = TwoTower(model_cfg, embedding_matrix(w2v, tokenizer, seed))
    train_cfg = TrainConfig(
        epochs=epochs, batch_size=64, lr=3e-3, embedding_lr=3e-3, next_token_positions=512,
        warmup_steps=10, seed=seed,
    )  # fmt: skip
    history = fit_local(model, ExampleSet.build(examples, tokenizer, model_cfg), train_cfg, log=log)
    dev = datasets.load_queries("dev")
    metrics = write_version(
        directory,
        model,
        tokenizer,
        collection,
        IndexConfig(num_shards=num_shards),
        {
            "profile": "tiny",
            "seed": seed,
            "train": train_cfg.to_dict(),
            "word2vec": vars(w2v_cfg),
            "examples": len(examples),
            "history": history,
        },
        {"dev_slice": (dev, datasets.load_qrels("dev"))},
    )
    metrics["train_seconds"] = round(time.time() - started, 2)
    return metrics
