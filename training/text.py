"""The one tokenizer shared by training, indexing and serving.

It is saved inside every model version (``tokenizer.json``), so serving always splits and
numbers words exactly as training did. Normalisation is Unicode NFKC + lower-casing; tokens
are runs of word characters (punctuation carries little for retrieval and only bloats the
vocabulary). Ids are ordered by frequency after the four special tokens, which lets the
next-token head use an adaptive softmax with frequency cut-offs.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)
_WORD = re.compile(r"\w+")
FORMAT_VERSION = 1


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def query_key(query: str) -> str:
    """The one identity of a query: two queries with the same key are the same query to every
    leak guard (evaluation queries never reach training), to deduplication and to click logs."""
    return " ".join(normalise(query).split())


def tokenize(text: str) -> list[str]:
    """Words of ``text`` after normalisation: what word2vec, BM25 and the model all see."""
    return _WORD.findall(normalise(text))


class Tokenizer:
    def __init__(self, vocab: list[str], min_count: int = 1):
        if tuple(vocab[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with the special tokens {SPECIALS}")
        if len(set(vocab)) != len(vocab):
            raise ValueError("the vocabulary has duplicate tokens")
        self.vocab = list(vocab)
        self.min_count = min_count
        self.index = {token: i for i, token in enumerate(self.vocab)}

    @classmethod
    def build(
        cls, texts: Iterable[str], min_count: int = 2, max_size: int | None = None
    ) -> Tokenizer:
        """Vocabulary of the words seen at least ``min_count`` times, most frequent first."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts = Counter(word for text in texts for word in tokenize(text))
        words = [w for w, c in counts.most_common() if c >= min_count and w not in SPECIALS]
        if max_size is not None:
            words = words[: max(0, max_size - len(SPECIALS))]
        return cls(list(SPECIALS) + words, min_count=min_count)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str, max_length: int | None = None, bos_eos: bool = True) -> list[int]:
        """Token ids, ``[BOS] words… [EOS]`` by default, cut to at most ``max_length`` ids.

        A cut sequence keeps its BOS but loses its EOS: the model then knows the text went on.
        """
        ids = [self.index.get(word, UNK_ID) for word in tokenize(text)]
        if bos_eos:
            ids = [BOS_ID, *ids, EOS_ID]
        if max_length is not None:
            if max_length < 1:
                raise ValueError(f"max_length must be >= 1, got {max_length}")
            ids = ids[:max_length]
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Words of the ids, specials dropped (UNK stays visible)."""
        skip = {PAD_ID, BOS_ID, EOS_ID}
        return " ".join(self.vocab[i] for i in ids if i not in skip)

    def to_dict(self) -> dict:
        return {"format": FORMAT_VERSION, "min_count": self.min_count, "vocab": self.vocab}

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported tokenizer format {data.get('format')!r}")
        return cls(data["vocab"], min_count=data.get("min_count", 1))
