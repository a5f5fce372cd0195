"""Skip-gram word2vec (gensim) on the corpus and the TRAINING queries, to initialise the
shared embedding layer. Evaluation queries never enter it."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from gensim.models import Word2Vec
from gensim.models.callbacks import CallbackAny2Vec

from training.text import PAD_ID, Tokenizer, tokenize


@dataclass
class Word2VecConfig:
    dim: int = 128
    window: int = 5
    epochs: int = 5
    min_count: int = 2
    negative: int = 10
    workers: int = 1  # 1 keeps gensim bit-for-bit reproducible for a seed


def _stable_hash(text: str) -> int:
    """gensim seeds each word's vector with hashfxn; Python's hash() changes per process."""
    return zlib.crc32(text.encode("utf-8"))


class _Progress(CallbackAny2Vec):
    def __init__(self, epochs: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=epochs, desc="word2vec", unit="epoch", disable=not enabled)

    def on_epoch_end(self, model) -> None:
        self.bar.update(1)

    def on_train_end(self, model) -> None:
        self.bar.close()


def train_word2vec(
    texts: list[str], cfg: Word2VecConfig, seed: int, progress: bool = True
) -> Word2Vec:
    sentences = [tokenize(t) for t in texts]
    return Word2Vec(
        sentences=sentences,
        vector_size=cfg.dim,
        window=cfg.window,
        min_count=cfg.min_count,
        sg=1,
        negative=cfg.negative,
        epochs=cfg.epochs,
        workers=cfg.workers,
        seed=seed,
        hashfxn=_stable_hash,
        callbacks=[_Progress(cfg.epochs, progress)],
    )


def embedding_matrix(w2v: Word2Vec, tokenizer: Tokenizer, seed: int) -> np.ndarray:
    """(vocab, dim) float32: word2vec rows where known, small random rows elsewhere, PAD = 0."""
    kv = w2v.wv
    rng = np.random.default_rng(seed)
    scale = float(np.std(kv.vectors)) if len(kv) else 0.1
    matrix = rng.normal(0.0, scale, size=(len(tokenizer), kv.vector_size)).astype(np.float32)
    for i, word in enumerate(tokenizer.vocab):
        if word in kv.key_to_index:
            matrix[i] = kv[word]
    matrix[PAD_ID] = 0.0
    return matrix
