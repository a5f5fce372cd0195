"""What the simulated users will do, decided before anyone searches: pure and seeded.

- **Zipf traffic**: the pool's queries get one seeded popularity order; every session draws
  its query with P(rank r) proportional to 1 / r**s. The order is the same every day, so head
  queries come back day after day, as they do in real search logs, while each day's draws
  differ. Day ``days`` (0-based) is the held-out next day: planned, never asked, and what the
  traffic-weighted MRR@10 is measured on.
- **Position-based clicks**: a result at rank r is examined with probability
  ``examination[r - 1]`` and, once examined, clicked with a probability that rises with its
  judged grade (gain-shaped, 2**g - 1, as in Ai et al. 2018's simulations): the highest grade
  gets ``p_relevant``, an unjudged or grade-0 result ``p_noise``.
- **Bots**: a few sessions that act fast and click what a person would not, so that the
  learning loop's bot filters and the API's checks see them.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from cluster.config import Settings
from learning.traffic import QueryPool, TrafficDay, day_of

BOT_KINDS = ("hammer", "phantom")  # one result clicked again and again; ids never shown
BOT_ACTIONS = 8  # searches-and-clicks of a hammer, clicks on unshown ids of a phantom


def _default(name: str):
    """The default of setting ``name``: settings are the one source of the simulator's numbers."""
    info = Settings.model_fields[name]
    return info.default_factory() if info.default_factory else info.default


# --------------------------------------------------------------------------- Zipf traffic
def popularity_order(qids: Sequence[str], seed: int) -> list[str]:
    """The pool's queries, most popular first: a seeded shuffle, so popularity has nothing to
    do with qid order or with how well the live version answers a query."""
    order = sorted(set(qids))
    random.Random(f"popularity-{seed}").shuffle(order)
    return order


def zipf_cum_weights(n: int, exponent: float) -> list[float]:
    """Cumulative weights of ranks 1..n under P(r) proportional to 1 / r**exponent."""
    return list(itertools.accumulate(1.0 / r**exponent for r in range(1, n + 1)))


def draw_day(
    order: Sequence[str], sessions: int, exponent: float, seed: int, day: int
) -> list[str]:
    """The query of each of a day's ``sessions``; each day draws with its own seeded stream."""
    rng = random.Random(f"traffic-{seed}-day-{day}")
    return rng.choices(order, cum_weights=zipf_cum_weights(len(order), exponent), k=sessions)


@dataclass(frozen=True)
class TrafficPlan:
    order: tuple[str, ...]  # qids, most popular first
    days: tuple[tuple[str, ...], ...]  # the qid of each session of each simulated day
    next_day: tuple[str, ...]  # the held-out day after them: planned, never asked
    exponent: float
    seed: int

    def next_day_counts(self) -> dict[str, int]:
        return dict(Counter(self.next_day))


def plan_traffic(
    qids: Sequence[str], sessions: int, days: int = 1, exponent: float = 1.0, seed: int = 1
) -> TrafficPlan:
    """``sessions`` per day for ``days`` days, plus the held-out next day, over ``qids``."""
    if not qids:
        raise ValueError("the query pool is empty")
    if sessions < 1 or days < 1 or exponent < 0:
        raise ValueError(f"need sessions >= 1, days >= 1, zipf >= 0 (got {sessions, days})")
    order = popularity_order(qids, seed)
    drawn = [tuple(draw_day(order, sessions, exponent, seed, d)) for d in range(days + 1)]
    return TrafficPlan(tuple(order), tuple(drawn[:days]), drawn[days], exponent, seed)


def held_out_day(plan: TrafficPlan, pool: QueryPool) -> TrafficDay:
    """The plan's next day as the loop stores and scores it."""
    meta = {
        "seed": plan.seed,
        "zipf": plan.exponent,
        "day": len(plan.days),
        "sessions": len(plan.next_day),
        "pool": pool.source,
    }
    return day_of(plan.next_day_counts(), pool, meta)


# --------------------------------------------------------------------------- clicks
@dataclass(frozen=True)
class ClickModel:
    """Position-based clicks: examination by rank times a click probability by grade."""

    examination: tuple[float, ...] = tuple(_default("simulate_examination"))
    p_relevant: float = _default("simulate_p_click_relevant")  # the highest grade
    p_noise: float = _default("simulate_p_click_irrelevant")  # grade 0 or unjudged
    max_grade: int = 1  # the pool's highest grade (MS MARCO dev: 1, TREC DL: 3)
    eta: float | None = None  # set: examination is (1/r)**eta at every rank instead

    def __post_init__(self) -> None:
        values = (*self.examination, self.p_relevant, self.p_noise)
        if not self.examination or any(not 0 <= p <= 1 for p in values) or self.max_grade < 1:
            raise ValueError(f"probabilities must be in [0, 1] and max_grade >= 1: {self}")

    @classmethod
    def from_settings(cls, settings: Settings, max_grade: int = 1) -> ClickModel:
        return cls(
            tuple(settings.simulate_examination),
            settings.simulate_p_click_relevant,
            settings.simulate_p_click_irrelevant,
            max_grade,
        )

    def examined(self, rank: int) -> float:
        """P(examined | rank); ranks past the list keep its last value."""
        if self.eta is not None:
            return (1.0 / rank) ** self.eta
        return self.examination[min(rank, len(self.examination)) - 1]

    def attractive(self, grade: int) -> float:
        """P(click | examined, grade): noise at grade 0, ``p_relevant`` at the top grade."""
        if grade <= 0:
            return self.p_noise
        gain = (2 ** min(grade, self.max_grade) - 1) / (2**self.max_grade - 1)
        return self.p_noise + (self.p_relevant - self.p_noise) * gain

    def clicks(
        self,
        shown: Sequence[str],
        grades: Mapping[str, int] | Collection[str],
        rng: random.Random,
    ) -> list[str]:
        """The shown ids this user clicks, in rank order. ``grades`` is doc_id -> grade, or a
        set of relevant ids (grade 1 each)."""
        if not isinstance(grades, Mapping):
            grades = dict.fromkeys(grades, 1)
        clicked = []
        for rank, doc_id in enumerate(shown, 1):
            if rng.random() < self.examined(rank):
                if rng.random() < self.attractive(grades.get(doc_id, 0)):
                    clicked.append(doc_id)
        return clicked


# --------------------------------------------------------------------------- sessions
@dataclass(frozen=True)
class UserSession:
    """A person: one search, then clicks with a human pause before each."""

    session_id: str
    qid: str
    query: str
    grades: dict[str, int]  # doc_id -> judged grade of this query
    seed: str  # seeds the clicks and pauses, so a session acts the same on any thread
    dwell_s: tuple[float, float] = (0.4, 1.0)

    def rng(self) -> random.Random:
        return random.Random(self.seed)


@dataclass(frozen=True)
class BotSession:
    """A bot: ``hammer`` searches and clicks the last result ``BOT_ACTIONS`` times without a
    pause; ``phantom`` searches once and clicks ``decoys`` it was never shown."""

    session_id: str
    query: str
    kind: str
    decoys: tuple[str, ...] = field(default=())


def bot_count(settings: Settings, sessions: int, days: int) -> int:
    """The default number of bots: ``simulate_bot_share`` of all sessions, rounded up, so a
    small run still has one."""
    return math.ceil(settings.simulate_bot_share * sessions * days)


def user_sessions(
    plan: TrafficPlan, pool: QueryPool, day: int, dwell_s: tuple[float, float]
) -> list[UserSession]:
    return [
        UserSession(
            f"sim-{plan.seed}-d{day}-{i}",
            qid,
            pool.queries[qid],
            pool.qrels[qid],
            f"session-{plan.seed}-{day}-{i}",
            dwell_s,
        )
        for i, qid in enumerate(plan.days[day])
    ]


def bot_sessions(plan: TrafficPlan, pool: QueryPool, bots: int) -> list[list[BotSession]]:
    """``bots`` bots spread over the days (bot i on day i mod days), on Zipf-drawn queries,
    kinds taking turns; a phantom's decoys are documents judged for other queries."""
    rng = random.Random(f"bots-{plan.seed}")
    weights = zipf_cum_weights(len(plan.order), plan.exponent)
    documents = sorted({d for docs in pool.qrels.values() for d in docs})
    per_day: list[list[BotSession]] = [[] for _ in plan.days]
    for i in range(bots):
        qid = rng.choices(plan.order, cum_weights=weights)[0]
        kind = BOT_KINDS[i % len(BOT_KINDS)]
        own = pool.qrels[qid]
        others = [d for d in documents if d not in own]
        decoys = (
            tuple(rng.sample(others, min(BOT_ACTIONS, len(others)))) if kind == "phantom" else ()
        )
        session = BotSession(f"bot-{plan.seed}-{i}", pool.queries[qid], kind, decoys)
        per_day[i % len(plan.days)].append(session)
    return per_day


def day_sessions(
    plan: TrafficPlan, pool: QueryPool, bots: int, dwell_s: tuple[float, float]
) -> list[list[UserSession | BotSession]]:
    """Each day's users and bots, in a seeded order: bots arrive among the users."""
    bots_by_day = bot_sessions(plan, pool, bots)
    days = []
    for day in range(len(plan.days)):
        sessions: list[UserSession | BotSession] = [
            *user_sessions(plan, pool, day, dwell_s),
            *bots_by_day[day],
        ]
        random.Random(f"arrivals-{plan.seed}-{day}").shuffle(sessions)
        days.append(sessions)
    return days
