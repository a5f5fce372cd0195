"""Which queries the learning loop may learn from, and which it must only be measured on.

The split is fixed (a constant seed, not a setting) so every run, every simulation and every
measurement agrees on it: half of the dev queries are the simulated users' queries and the
only evaluation-set queries the loop may ever learn from; the other dev half, DL19, test and
DL20 are measurement-only and are filtered out of the training triplets whatever the logs say.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from training.datasets import load_queries
from training.text import query_key

SPLIT_SEED = 20261127  # never change: it would leak held-out queries into past training
MEASURE_ONLY_SPLITS = ("dl19", "test", "dl20")


@dataclass(frozen=True)
class DevSplit:
    simulated: dict[str, str]  # qid -> query: simulated users ask these (trainable)
    held_out: dict[str, str]  # qid -> query: measurement only


@lru_cache(maxsize=1)
def dev_split() -> DevSplit:
    """Half the dev queries for simulated users, half held out, by a fixed seeded shuffle."""
    queries = load_queries("dev")
    qids = sorted(queries)
    random.Random(SPLIT_SEED).shuffle(qids)
    half = len(qids) // 2
    return DevSplit(
        simulated={q: queries[q] for q in sorted(qids[:half])},
        held_out={q: queries[q] for q in sorted(qids[half:])},
    )


@lru_cache(maxsize=1)
def untrainable_queries() -> frozenset[str]:
    """Normalised texts the loop must never train on: held-out dev half, DL19, test, DL20."""
    texts = {query_key(q) for q in dev_split().held_out.values()}
    for split in MEASURE_ONLY_SPLITS:
        texts.update(query_key(q) for q in load_queries(split).values())
    # A simulated-half query that is textually identical to a held-out one stays untrainable.
    return frozenset(texts)
