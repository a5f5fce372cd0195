"""The oracle's triplets: what a perfect click log on the simulated half would teach."""

import pytest

from experiments.oracle import oracle_triplets
from learning.splits import dev_split

QRELS = {"q1": {"7": 1}, "q2": {"5": 1}, "q3": {"9": 1, "4": 0}}
QUERIES = {"q1": "what is a brisket", "q2": "how long to boil eggs", "q3": "who wrote hamlet"}
RANKING = {"q1": ["5", "6", "7", "8"], "q2": ["5", "6", "7"], "q3": ["1", "2", "4", "3"]}


def test_skip_above_negatives_are_the_passages_shown_above_the_judged_one():
    triplets = oracle_triplets(QUERIES, QRELS, RANKING, per_query=3)
    by_query = {}
    for t in triplets:
        by_query.setdefault(t.query, []).append((t.positive, t.negative))
    assert by_query["what is a brisket"] == [("7", "5"), ("7", "6")]  # rank 3: two above it
    assert "how long to boil eggs" not in by_query  # judged at rank 1: nothing to learn
    # Not shown at all: the first page was all above it; a passage judged 0 is a negative.
    assert by_query["who wrote hamlet"] == [("9", "1"), ("9", "2"), ("9", "4")]
    assert {t.source for t in triplets} == {"oracle"} and {t.weight for t in triplets} == {1.0}


def test_per_query_caps_the_negatives():
    triplets = oracle_triplets(QUERIES, QRELS, RANKING, per_query=1)
    assert [(t.positive, t.negative) for t in triplets] == [("7", "5"), ("9", "1")]


def test_random_negatives_come_from_the_pool_never_the_positive_and_repeat():
    pool = [str(i) for i in range(1, 12)]
    first = oracle_triplets(QUERIES, QRELS, {}, negatives="random", per_query=3, pool=pool)
    again = oracle_triplets(QUERIES, QRELS, {}, negatives="random", per_query=3, pool=pool)
    assert first == again
    assert len(first) == 9  # every judged query, three each
    assert all(t.negative in pool and t.negative != t.positive for t in first)


def test_held_out_queries_are_never_taught():
    qid, text = next(iter(dev_split().held_out.items()))
    queries = {**QUERIES, qid: text}
    qrels = {**QRELS, qid: {"3": 1}}
    triplets = oracle_triplets(queries, qrels, {**RANKING, qid: ["1", "2", "3"]})
    assert text not in {t.query for t in triplets}
    assert {t.query for t in triplets} == {"what is a brisket", "who wrote hamlet"}


def test_unknown_negative_kind_is_refused():
    with pytest.raises(ValueError, match="negatives must be one of"):
        oracle_triplets(QUERIES, QRELS, RANKING, negatives="bm25")
