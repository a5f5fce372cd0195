"""The traffic plan: Zipf popularity over days, seeded, with bots among the people."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from cluster.config import Settings
from learning.traffic import judged_pool
from twotower.traffic_plan import (
    BOT_ACTIONS,
    BotSession,
    UserSession,
    bot_count,
    day_sessions,
    held_out_day,
    plan_traffic,
)

QIDS = [f"q{i}" for i in range(60)]


def pool_of(qids):
    queries = {q: f"query {q}" for q in qids}
    qrels = {q: {f"d-{q}": 1, f"x-{q}": 0} for q in qids}
    return judged_pool(queries, qrels, "test pool")


def fitted_exponent(counts: Counter, order, ranks: int = 10) -> float:
    """Least-squares slope of log(count) against log(rank) over the head ranks."""
    xs = [math.log(r) for r in range(1, ranks + 1)]
    ys = [math.log(counts[order[r - 1]]) for r in range(1, ranks + 1)]
    mx, my = sum(xs) / ranks, sum(ys) / ranks
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return -slope


def test_the_same_seed_gives_the_same_plan_and_another_seed_another():
    a = plan_traffic(QIDS, sessions=100, days=3, exponent=1.0, seed=5)
    assert a == plan_traffic(QIDS, sessions=100, days=3, exponent=1.0, seed=5)
    b = plan_traffic(QIDS, sessions=100, days=3, exponent=1.0, seed=6)
    assert a.order != b.order and a.days != b.days
    assert len(a.days) == 3 and all(len(d) == 100 for d in a.days) and len(a.next_day) == 100
    assert sorted(a.order) == sorted(QIDS)  # a popularity order over the whole pool


def test_head_queries_repeat_across_days_and_days_differ():
    plan = plan_traffic(QIDS, sessions=200, days=3, exponent=1.0, seed=1)
    head = plan.order[:3]
    for day in (*plan.days, plan.next_day):
        counts = Counter(day)
        assert all(counts[q] >= 5 for q in head)  # asked many times every day
        assert counts.most_common(1)[0][0] in head
    asked_before = set(plan.days[0])
    repeated = sum(q in asked_before for q in plan.next_day) / len(plan.next_day)
    assert repeated > 0.8  # most of the next day's searches were asked on day one
    assert len({tuple(d) for d in plan.days} | {plan.next_day}) == 4


@pytest.mark.parametrize("exponent", [0.8, 1.0, 1.3])
def test_frequencies_follow_the_exponent(exponent):
    plan = plan_traffic(QIDS, sessions=40000, days=1, exponent=exponent, seed=3)
    counts = Counter(plan.days[0])
    assert abs(fitted_exponent(counts, plan.order) - exponent) < 0.12
    assert counts[plan.order[0]] > counts[plan.order[1]] > counts[plan.order[9]]


def test_zero_exponent_is_uniform_and_bad_plans_are_refused():
    counts = Counter(plan_traffic(QIDS, sessions=30000, exponent=0.0, seed=2).days[0])
    assert max(counts.values()) / min(counts.values()) < 1.4
    with pytest.raises(ValueError):
        plan_traffic([], sessions=10)
    with pytest.raises(ValueError):
        plan_traffic(QIDS, sessions=0)


def test_the_held_out_day_is_the_next_day_with_its_judgments():
    pool = pool_of(QIDS)
    plan = plan_traffic(QIDS, sessions=50, days=2, exponent=1.0, seed=4)
    day = held_out_day(plan, pool)
    assert day.counts == dict(Counter(plan.next_day)) and day.searches == 50
    assert set(day.queries) == set(day.counts) == set(day.qrels)
    assert day.meta["day"] == 2 and day.meta["zipf"] == 1.0 and day.meta["seed"] == 4


def test_bots_arrive_among_the_people_of_each_day():
    pool = pool_of(QIDS)
    plan = plan_traffic(QIDS, sessions=30, days=2, exponent=1.0, seed=9)
    days = day_sessions(plan, pool, bots=4, dwell_s=(0.3, 0.5))
    assert days == day_sessions(plan, pool, bots=4, dwell_s=(0.3, 0.5))
    bots = [s for day in days for s in day if isinstance(s, BotSession)]
    people = [s for day in days for s in day if isinstance(s, UserSession)]
    assert len(bots) == 4 and len(people) == 60
    assert [sum(isinstance(s, BotSession) for s in day) for day in days] == [2, 2]
    assert {b.kind for b in bots} == {"hammer", "phantom"}
    for bot in bots:
        if bot.kind == "phantom":  # ids judged for other queries: never shown for this one
            qid = next(q for q, text in pool.queries.items() if text == bot.query)
            assert len(bot.decoys) == BOT_ACTIONS and not set(bot.decoys) & set(pool.qrels[qid])
    assert len({s.session_id for s in bots + people}) == 64


def test_the_default_bot_count_is_a_small_share_rounded_up():
    settings = Settings()
    assert bot_count(settings, sessions=20, days=1) == 1
    assert bot_count(settings, sessions=2000, days=1) == round(2000 * settings.simulate_bot_share)
