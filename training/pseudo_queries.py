"""Self-supervised pseudo-queries cut from the corpus (inverse cloze task).

A short span of a passage plays the query and the passage plays its positive. This gives the
query tower tens of thousands of (query-like text, passage) pairs beyond the 6.5k labelled
ones. The spans are deterministic for a seed, and the teacher cache ships the ones it encoded.
"""

from __future__ import annotations

import random
import re

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def inverse_cloze_span(
    passage: str, rng: random.Random, min_words: int = 4, max_words: int = 12
) -> str:
    """One sentence of ``passage`` (or a window of it when long), as a pseudo-query."""
    sentences = [s for s in _SENTENCE_END.split(passage) if len(s.split()) >= min_words]
    words = rng.choice(sentences).split() if sentences else passage.split()
    if len(words) <= max_words:
        return " ".join(words)
    length = rng.randint(min_words, max_words)
    start = rng.randint(0, len(words) - length)
    return " ".join(words[start : start + length])


def inverse_cloze_spans(passages: list[str], seed: int) -> list[str]:
    """One span per passage, reproducible for a given seed."""
    rng = random.Random(seed)
    return [inverse_cloze_span(text, rng) for text in passages]
