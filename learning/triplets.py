"""Logged searches and feedback -> weighted training triplets (query, positive, negative).

Pure functions, no I/O: the job reads rows from the log store and hands them here.

Position bias (docs/learning-loop.md, "Position bias", says why):
- negatives are *skip-above* passages (shown above a clicked one and not clicked: a user who
  clicked rank r almost surely looked at ranks < r), explicit ``not_relevant`` marks, and,
  only when a positive has neither, a *mined* passage from a caller-supplied miner;
- each click is weighted by its inverse propensity ``1 / P(examined | rank)`` with
  ``P = (1 / rank) ** eta``, clipped at ``max_ipw``, so relevant passages that users only
  rarely reach (low ranks) are not under-counted; explicit ``relevant`` marks weigh 1. A
  click's pairs share its weight;
- optionally a click counts only once ``min_click_sessions`` sessions made it (unrelated
  clicks rarely repeat).
Weights are normalised to mean 1 so log triplets and replay data share a scale.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime

from cluster.config import Settings
from cluster.logstore.records import FEEDBACK_KINDS
from learning.traffic import is_measurement
from training.text import query_key


@dataclass(frozen=True)
class FeedbackEvent:
    """One feedback row joined with the search it belongs to."""

    feedback_id: int
    search_id: str
    session_id: str | None
    query: str
    shown: tuple[str, ...]  # document ids in the order they were shown (rank 1 first)
    searched_at: datetime
    doc_id: str
    kind: str  # click | relevant | not_relevant
    created_at: datetime

    @property
    def session(self) -> str:
        return self.session_id or f"search:{self.search_id}"


@dataclass(frozen=True)
class Triplet:
    query: str
    positive: str  # document id
    negative: str  # document id
    weight: float
    source: str  # skip_above | not_relevant | mined


def _setting(name: str):
    """A field whose default is the setting ``reinforce_<name>``: settings are the one source."""
    return field(default=Settings.model_fields[f"reinforce_{name}"].default)


@dataclass(frozen=True)
class TripletConfig:
    """How logs become triplets. Each field but ``bot_min_shown`` is the setting
    ``reinforce_<field>`` (cluster/config.py says what it means)."""

    propensity_eta: float = _setting("propensity_eta")
    max_ipw: float = _setting("max_ipw")
    bot_max_events_per_s: int = _setting("bot_max_events_per_s")
    bot_click_fraction: float = _setting("bot_click_fraction")
    holdout_fraction: float = _setting("holdout_fraction")
    min_click_sessions: int = _setting("min_click_sessions")
    bot_min_shown: int = 5  # a session is judged a clicking bot only once this many were shown

    @classmethod
    def from_settings(cls, settings: Settings) -> TripletConfig:
        names = [f.name for f in fields(cls) if f.name != "bot_min_shown"]
        return cls(**{n: getattr(settings, f"reinforce_{n}") for n in names})


@dataclass
class SearchFeedback:
    """Everything users told us about one search."""

    search_id: str
    session: str
    query: str
    shown: tuple[str, ...]
    searched_at: datetime
    positives: dict[str, float] = field(default_factory=dict)  # document id -> IPW weight
    not_relevant: set[str] = field(default_factory=set)
    clicked: set[str] = field(default_factory=set)


@dataclass
class LogData:
    """What one run learns from, and what it keeps back for the gate."""

    train: list[Triplet]
    holdout: dict[str, set[str]]  # normalised query -> relevant document ids (logged qrels)
    events_read: int
    events_used: int  # after bot filtering, dedup and the untrainable-query guard
    bot_sessions: int
    dropped_untrainable: int

    def trained_queries(self) -> frozenset[str]:
        """Normalised texts of the queries the fine-tune learns from (the gate leaves them out
        of dev)."""
        return frozenset(query_key(t.query) for t in self.train)


def propensity(rank: int, eta: float) -> float:
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    return (1.0 / rank) ** eta


def deduplicate_events(events: Iterable[FeedbackEvent]) -> list[FeedbackEvent]:
    """One event per (search, document, kind): double clicks and retried posts count once."""
    seen: dict[tuple[str, str, str], FeedbackEvent] = {}
    for event in sorted(events, key=lambda e: e.feedback_id):
        if event.kind not in FEEDBACK_KINDS:
            raise ValueError(f"unknown feedback kind {event.kind!r} (id {event.feedback_id})")
        seen.setdefault((event.search_id, event.doc_id, event.kind), event)
    return list(seen.values())


def bot_sessions(events: Sequence[FeedbackEvent], config: TripletConfig) -> set[str]:
    """Sessions that act too fast (events per second) or click on (almost) everything shown."""
    times: dict[str, list[float]] = defaultdict(list)
    searches: dict[str, dict[str, tuple[str, ...]]] = defaultdict(dict)
    clicks: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for e in events:
        if e.search_id not in searches[e.session]:
            searches[e.session][e.search_id] = e.shown
            times[e.session].append(e.searched_at.timestamp())
        times[e.session].append(e.created_at.timestamp())
        if e.kind == "click":
            clicks[e.session].add((e.search_id, e.doc_id))
    bots = set()
    for session, stamps in times.items():
        if _max_events_in_one_second(stamps) > config.bot_max_events_per_s:
            bots.add(session)
            continue
        shown = {(sid, d) for sid, ids in searches[session].items() for d in ids}
        clicked_shown = clicks[session] & shown
        if len(shown) >= config.bot_min_shown and (
            len(clicked_shown) >= config.bot_click_fraction * len(shown)
        ):
            bots.add(session)
    return bots


def _max_events_in_one_second(stamps: list[float]) -> int:
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, t in enumerate(stamps):
        while t - stamps[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def corroborated_clicks(events: Iterable[FeedbackEvent], min_sessions: int) -> set[tuple[str, str]]:
    """(normalised query, document id) pairs that at least ``min_sessions`` sessions clicked."""
    sessions: dict[tuple[str, str], set[str]] = defaultdict(set)
    for e in events:
        if e.kind == "click":
            sessions[(query_key(e.query), e.doc_id)].add(e.session)
    return {key for key, who in sessions.items() if len(who) >= min_sessions}


def group_by_search(
    events: Sequence[FeedbackEvent], config: TripletConfig
) -> dict[str, SearchFeedback]:
    """Positives (with their IPW weight), explicit negatives and clicks per search. A click
    that too few sessions share still counts as interacted (never a skip-above negative)."""
    trusted = corroborated_clicks(events, config.min_click_sessions)
    searches: dict[str, SearchFeedback] = {}
    for e in events:
        s = searches.setdefault(
            e.search_id,
            SearchFeedback(e.search_id, e.session, e.query, e.shown, e.searched_at),
        )
        if e.kind == "not_relevant":
            s.not_relevant.add(e.doc_id)
        elif e.kind == "relevant":
            s.positives[e.doc_id] = max(s.positives.get(e.doc_id, 0.0), 1.0)
        else:  # click
            s.clicked.add(e.doc_id)
            if (query_key(e.query), e.doc_id) not in trusted:
                continue
            if e.doc_id in e.shown:
                rank = e.shown.index(e.doc_id) + 1
                weight = min(1.0 / propensity(rank, config.propensity_eta), config.max_ipw)
            else:  # a click on something we never showed: trust it, but do not boost it
                weight = 1.0
            s.positives[e.doc_id] = max(s.positives.get(e.doc_id, 0.0), weight)
    for s in searches.values():  # an explicit "not relevant" overrides a click
        for doc_id in s.not_relevant:
            s.positives.pop(doc_id, None)
    return searches


def search_triplets(
    search: SearchFeedback, mine: Callable[[str, set[str]], str | None] | None = None
) -> list[Triplet]:
    """Skip-above and not-relevant negatives per positive; a mined one if it has neither."""
    triplets = []
    interacted = search.clicked | set(search.positives) | search.not_relevant
    for pos, weight in search.positives.items():
        negatives: dict[str, str] = {d: "not_relevant" for d in search.not_relevant}
        if pos in search.shown:
            for doc_id in search.shown[: search.shown.index(pos)]:
                if doc_id not in interacted:
                    negatives.setdefault(doc_id, "skip_above")
        if not negatives and mine is not None:
            mined = mine(search.query, set(search.positives))
            if mined is not None and mined not in search.positives:
                negatives[mined] = "mined"
        # One click is one observation: its pairs share its weight. Otherwise a click at rank
        # r would count (r - 1) times over, on top of its IPW of up to r, and the rare
        # unrelated clicks deep in the list (most of what users click there) would outweigh
        # every relevant click near the top.
        for neg, source in negatives.items():
            triplets.append(Triplet(search.query, pos, neg, weight / len(negatives), source))
    return triplets


def deduplicate_triplets(triplets: Iterable[Triplet]) -> list[Triplet]:
    """One triplet per (normalised query, positive, negative), keeping the largest weight:
    a query many users repeat is not allowed to drown the rest."""
    best: dict[tuple[str, str, str], Triplet] = {}
    for t in triplets:
        key = (query_key(t.query), t.positive, t.negative)
        if key not in best or t.weight > best[key].weight:
            best[key] = t
    return [best[k] for k in sorted(best)]


def normalise_weights(triplets: list[Triplet]) -> list[Triplet]:
    if not triplets:
        return []
    mean = sum(t.weight for t in triplets) / len(triplets)
    return [Triplet(t.query, t.positive, t.negative, t.weight / mean, t.source) for t in triplets]


def is_holdout(query: str, fraction: float) -> bool:
    """A stable, seedless hash split: a query is either always or never held out."""
    digest = hashlib.sha256(query_key(query).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def build_log_data(
    events: Sequence[FeedbackEvent],
    config: TripletConfig,
    untrainable: frozenset[str] = frozenset(),
    mine: Callable[[str, set[str]], str | None] | None = None,
) -> LogData:
    """The whole log -> training-data path the job runs once per run. Measurement sessions
    (``learning.traffic.MEASURE_SESSION_PREFIX``) only judge the stack: never learned from."""
    unique = deduplicate_events(e for e in events if not is_measurement(e.session_id))
    bots = bot_sessions(unique, config)
    human = [e for e in unique if e.session not in bots]
    allowed = [e for e in human if query_key(e.query) not in untrainable]
    dropped = len({e.search_id for e in human}) - len({e.search_id for e in allowed})
    searches = group_by_search(allowed, config)
    train: list[Triplet] = []
    holdout: dict[str, set[str]] = defaultdict(set)
    for search in searches.values():
        if is_holdout(search.query, config.holdout_fraction):
            holdout[query_key(search.query)].update(search.positives)
        else:
            train.extend(search_triplets(search, mine))
    return LogData(
        train=normalise_weights(deduplicate_triplets(train)),
        holdout={q: ids for q, ids in holdout.items() if ids},
        events_read=len(events),
        events_used=len(allowed),
        bot_sessions=len(bots),
        dropped_untrainable=dropped,
    )
