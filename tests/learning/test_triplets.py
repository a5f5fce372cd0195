"""Log -> triplets: position bias, dedup, bot filtering and the untrainable-query guard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from learning.splits import dev_split, untrainable_queries
from learning.triplets import (
    FeedbackEvent,
    TripletConfig,
    bot_sessions,
    build_log_data,
    deduplicate_events,
    is_holdout,
    propensity,
)
from training.text import query_key

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CONFIG = TripletConfig(holdout_fraction=0.0)
_ids = iter(range(1, 10_000))


def event(search, doc_id, kind="click", *, query="q one", shown=(1, 2, 3, 4), session=None, at=2.0):
    return FeedbackEvent(
        feedback_id=next(_ids),
        search_id=search,
        session_id=session or f"s-{search}",
        query=query,
        shown=tuple(shown),
        searched_at=T0,
        doc_id=doc_id,
        kind=kind,
        created_at=T0 + timedelta(seconds=at),
    )


def query_weights(triplets) -> dict[str, float]:
    """Each query's total weight over its triplets."""
    totals: dict[str, float] = {}
    for t in triplets:
        totals[t.query] = totals.get(t.query, 0.0) + t.weight
    return totals


def test_a_click_counts_once_only_when_enough_sessions_share_it():
    shown = (1, 2, 3, 4)
    events = [
        event("a", 3, shown=shown, session="u1"),
        event("b", 3, shown=shown, session="u2"),  # a second user clicks the same passage
        event("c", 4, shown=shown, session="u3"),  # one user's click on something else
    ]
    config = TripletConfig(holdout_fraction=0.0, min_click_sessions=2)
    data = build_log_data(events, config)
    assert {t.positive for t in data.train} == {3}
    # The lone click on 4 makes no positive, so search "c" gives no pair at all.
    assert {t.negative for t in data.train} == {1, 2}
    assert {t.positive for t in build_log_data(events, CONFIG).train} == {3, 4}


def test_skip_above_negatives_and_ipw_weight():
    data = build_log_data([event("a", 3)], CONFIG)
    assert {(t.positive, t.negative, t.source) for t in data.train} == {
        (3, 1, "skip_above"),
        (3, 2, "skip_above"),
    }
    assert all(t.weight == pytest.approx(1.0) for t in data.train)  # normalised to mean 1


def test_low_rank_click_outweighs_top_rank_click():
    events = [
        event("a", 3, query="first"),  # rank 3 -> IPW 3
        event("b", 1, query="second", shown=(1, 2), session="x"),
        event("b", 2, kind="not_relevant", query="second", shown=(1, 2), session="x", at=5),
    ]
    data = build_log_data(events, TripletConfig(holdout_fraction=0.0, propensity_eta=1.0))
    weight = query_weights(data.train)
    assert weight["first"] == pytest.approx(3 * weight["second"])
    # The rank-3 click's weight is shared by its two skip-above pairs, not counted twice.
    assert len([t for t in data.train if t.query == "first"]) == 2
    assert propensity(4, 2.0) == pytest.approx(1 / 16)
    with pytest.raises(ValueError, match="rank"):
        propensity(0, 1.0)


def test_ipw_is_clipped():
    config = TripletConfig(holdout_fraction=0.0, propensity_eta=2.0, max_ipw=5.0)
    shown = tuple(range(1, 11))
    data = build_log_data(
        [event("a", 10, shown=shown), event("b", 2, shown=shown, query="other")], config
    )
    raw = query_weights(data.train)
    # rank 10 with eta 2 would weigh 100; clipped to 5, against 4 for the rank-2 click.
    assert raw["q one"] / raw["other"] == pytest.approx(5 / 4)


def test_top_click_without_negative_uses_the_miner_or_nothing():
    assert build_log_data([event("a", 1)], CONFIG).train == []
    mined = build_log_data([event("a", 1)], CONFIG, mine=lambda query, positives: 99)
    assert [(t.positive, t.negative, t.source) for t in mined.train] == [(1, 99, "mined")]


def test_not_relevant_overrides_click_and_becomes_negative():
    events = [
        event("a", 2),
        event("a", 3, at=3),
        event("a", 3, kind="not_relevant", at=4),
        event("a", 4, kind="relevant", at=5),
    ]
    pairs = {(t.positive, t.negative, t.source) for t in build_log_data(events, CONFIG).train}
    assert 3 not in {p for p, _, _ in pairs}  # no longer a positive
    assert (2, 3, "not_relevant") in pairs and (4, 3, "not_relevant") in pairs
    assert (4, 1, "skip_above") in pairs
    assert (4, 2, "skip_above") not in pairs  # clicked passages are never negatives


def test_duplicates_count_once():
    events = [event("a", 3), event("a", 3, at=2.5), event("b", 3, session="other", at=9)]
    assert len(deduplicate_events(events)) == 2
    data = build_log_data(events, CONFIG)
    # search a and search b ask the same query: one triplet per (query, pos, neg).
    assert sorted((t.positive, t.negative) for t in data.train) == [(3, 1), (3, 2)]


def test_fast_sessions_and_click_everything_sessions_are_bots():
    fast = [event(f"f{i}", 2, session="fast", at=i * 0.1, query=f"f{i}") for i in range(6)]
    greedy = [event("g", d, session="greedy", at=2 + d * 2) for d in (1, 2, 3, 4, 5)]
    greedy = [
        FeedbackEvent(**{**e.__dict__, "shown": (1, 2, 3, 4, 5)}) for e in greedy
    ]  # clicks on all five results shown
    human = [event("h", 3, session="human")]
    bots = bot_sessions(deduplicate_events(fast + greedy + human), CONFIG)
    assert bots == {"fast", "greedy"}
    data = build_log_data(fast + greedy + human, CONFIG)
    assert data.bot_sessions == 2
    assert {t.query for t in data.train} == {"q one"}
    assert data.events_read == 12 and data.events_used == 1


def test_untrainable_queries_never_become_training_data():
    held = next(iter(dev_split().held_out.values()))
    simulated = next(iter(dev_split().simulated.values()))
    events = [event("a", 3, query=held.upper()), event("b", 3, query=simulated)]
    data = build_log_data(events, CONFIG, untrainable=untrainable_queries())
    assert {t.query for t in data.train} == {simulated}
    assert data.dropped_untrainable == 1


def test_dev_split_is_fixed_disjoint_and_covers_dev():
    split = dev_split()
    assert not set(split.simulated) & set(split.held_out)
    assert abs(len(split.simulated) - len(split.held_out)) <= 1
    guard = untrainable_queries()
    assert all(query_key(q) in guard for q in split.held_out.values())
    assert sum(query_key(q) in guard for q in split.simulated.values()) <= 2


def test_holdout_slice_is_stable_and_kept_out_of_training():
    queries = [f"query number {i}" for i in range(400)]
    held = [q for q in queries if is_holdout(q, 0.25)]
    assert 60 < len(held) < 140
    assert held == [q for q in queries if is_holdout(q.upper() + "  ", 0.25)]
    events = [event(q, 3, query=q, session=q) for q in queries[:40]]
    data = build_log_data(events, TripletConfig(holdout_fraction=0.25))
    trained = {t.query for t in data.train}
    assert set(data.holdout) == {query_key(q) for q in queries[:40] if is_holdout(q, 0.25)}
    assert not trained & set(data.holdout)
    assert all(ids == {3} for ids in data.holdout.values())


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown feedback kind 'like'"):
        build_log_data([event("a", 3, kind="like")], CONFIG)
