"""Query pools from TREC files, a day of traffic, the traffic-weighted MRR@10, the held-out
day in the real S3, and the loop ignoring measurement searches."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cluster.artifacts import ArtifactStore
from learning.traffic import (
    MEASURE_SESSION_PREFIX,
    PoolError,
    TrafficDay,
    default_pool,
    judged_pool,
    load_day,
    load_pool,
    per_search,
    read_topics,
    reciprocal_ranks,
    save_day,
    traffic_weighted_mrr,
)
from learning.triplets import FeedbackEvent, TripletConfig, build_log_data
from training.evaluation.metrics import mean

TOPICS = """
<top>
<num> Number: 301
<title> Topic: International
   Organized Crime
<desc> Description:
Identify organizations that participate in international criminal activity.
</top>

<top>
<num> 302 </num>
<title> poliomyelitis and post-polio </title>
<narr> Narrative: anything </narr>
</top>
"""


def write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- loaders
@pytest.mark.parametrize("name", ["topics.txt", "topics.txt.gz"])
def test_trec_topics_are_read_with_their_titles(tmp_path, name):
    queries = read_topics(write(tmp_path / name, TOPICS))
    assert queries == {
        "301": "International Organized Crime",
        "302": "poliomyelitis and post-polio",
    }


def test_tsv_queries_and_gzipped_qrels_make_a_pool_of_judged_queries(tmp_path):
    queries = write(tmp_path / "q.tsv", "1\tfirst query\n2\tsecond query\n3\t  \n4\tunjudged\n")
    qrels = write(tmp_path / "r.txt.gz", "1 0 d1 1\n1 0 d2 0\n2 0 d7 2\n4 0 d9 0\n")
    pool = load_pool(queries, qrels)
    assert pool.queries == {"1": "first query", "2": "second query"}  # blank 3 is dropped
    assert pool.qrels == {"1": {"d1": 1, "d2": 0}, "2": {"d7": 2}}  # doc ids are strings
    assert pool.unjudged == 1 and pool.max_grade == 2


@pytest.mark.parametrize(
    ("queries", "qrels", "message"),
    [
        (None, "1 0 d1 1\n", "does not exist"),
        ("1\tq\n", None, "does not exist"),
        ("", "1 0 d1 1\n", "no query in"),
        ("1\tq\n", "1 0 d1\n", "expected 'qid 0 doc_id rel'"),
        ("1\tq\n", "1 0 d1 high\n", "invalid literal"),
        ("1\tq\n", "2 0 d1 1\n1 0 d2 0\n", "has a relevant judgment"),
        ("1\n", "1 0 d1 1\n", "neither TREC topics nor"),
        ("<top><num> 1 <desc> no title</top>", "1 0 d1 1\n", "without <num> or <title>"),
    ],
)
def test_bad_pools_say_what_is_wrong(tmp_path, queries, qrels, message):
    q = tmp_path / "q.tsv" if queries is None else write(tmp_path / "q.tsv", queries)
    r = tmp_path / "r.txt" if qrels is None else write(tmp_path / "r.txt", qrels)
    with pytest.raises(PoolError, match=message):
        load_pool(q, r)


def test_the_default_pool_is_the_simulated_dev_half():
    pool = default_pool()
    assert pool.source.startswith("dev") and len(pool.queries) > 100
    assert all(any(g > 0 for g in pool.qrels[q].values()) for q in pool.queries)
    with pytest.raises(PoolError):
        judged_pool({}, {}, "nothing")


# --------------------------------------------------------------------------- the metric
def test_traffic_weighted_mrr_by_hand():
    day = TrafficDay(
        queries={"a": "query a", "b": "query b", "c": "query c"},
        counts={"a": 3, "b": 1, "c": 1},
        qrels={"a": {"d1": 1}, "b": {"d2": 1, "d3": 0}, "c": {"d4": 1}},
    )
    ranking = {"a": ["x", "d1", "y"], "b": ["d2"]}  # c unanswered: 0
    # RR: a = 1/2, b = 1, c = 0; weights 3, 1, 1 -> (1.5 + 1 + 0) / 5
    assert traffic_weighted_mrr(ranking, day) == pytest.approx(0.5)
    assert reciprocal_ranks(ranking, day) == {"a": 0.5, "b": 1.0, "c": 0.0}
    assert mean(per_search(reciprocal_ranks(ranking, day), day)) == pytest.approx(0.5)
    beyond_ten = {"a": [f"x{i}" for i in range(10)] + ["d1"], "b": ["d2"], "c": ["d4"]}
    assert traffic_weighted_mrr(beyond_ten, day) == pytest.approx((0 + 1 + 1) / 5)


def test_graded_judgments_count_from_grade_two():
    day = TrafficDay({"a": "a"}, {"a": 2}, {"a": {"weak": 1, "strong": 2}})
    assert traffic_weighted_mrr({"a": ["weak", "strong"]}, day) == pytest.approx(0.5)


def test_a_day_needs_positive_counts_of_judged_queries():
    with pytest.raises(ValueError):
        TrafficDay({"a": "a"}, {"a": 0}, {"a": {"d": 1}})
    with pytest.raises(ValueError):
        TrafficDay({"a": "a"}, {"a": 1}, {})
    day = TrafficDay({"a": "a"}, {"a": 4}, {"a": {"d": 1}}, {"seed": 1})
    assert TrafficDay.from_json(day.to_json()) == day


def test_the_held_out_day_round_trips_through_the_real_s3(settings):
    store = ArtifactStore.from_settings(settings)
    assert load_day(store, "traffic/never-written.json") is None
    day = TrafficDay({"7": "seven"}, {"7": 5}, {"7": {"d70": 2, "d71": 0}}, {"zipf": 1.0})
    key = save_day(store, day, "traffic/test-roundtrip.json")
    assert load_day(store, key) == day


# --------------------------------------------------------------------------- the loop
def test_the_loop_never_learns_from_measurement_sessions():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def click(fid, search, session):
        return FeedbackEvent(
            fid, search, session, "what is a loop", ("1", "2", "3"), t0, "3", "click",
            t0 + timedelta(seconds=2),
        )  # fmt: skip

    config = TripletConfig(holdout_fraction=0.0)
    person = build_log_data([click(1, "s1", "u1")], config)
    assert {t.positive for t in person.train} == {"3"}
    measured = build_log_data([click(2, "s2", f"{MEASURE_SESSION_PREFIX}1-before")], config)
    assert measured.train == [] and measured.events_used == 0 and measured.events_read == 1
