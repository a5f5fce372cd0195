"""The click prior: what clicks and relevance marks say about a (query, document), as evidence
that one user, one bot or one client address cannot inflate. Pure: no database, no clock.

The rules (docs/click-memory.md):

- An event counts only if its search showed the document (else: ignored, ``unshown``).
- A click at rank r weighs ``1 / propensity(r)``: users look at the top far more than the
  bottom, so a click deep in the list says more (inverse propensity, per-rank setting). A
  ``relevant`` mark weighs ``+session_cap`` and a ``not_relevant`` one ``-session_cap``: an
  explicit judgment is worth a whole session, and a "not relevant" undoes that session's clicks.
- Evidence decays with a half-life: ``value * 0.5 ** (age / half_life)``.
- A session (its ``session_id``, else the search itself) holds one running value per
  (query, document), clipped to ``±session_cap`` after every event: a session that clicks a
  result a thousand times counts as much as one that clicked it once at a deep rank. Its later
  events that the cap swallows are ignored (``capped``).
- A client (a hash of its address) counts with at most ``client_sessions`` sessions per
  (query, document); its further sessions are ignored (``client``): one address opening many
  sessions is still one voice.
- The prior of a (query, document) is the sum of its sessions' values, decayed to a common
  time, and the number of those sessions (what the minimum evidence is compared with).

The same fold runs in PostgreSQL's fold (cluster/logstore/click_memory.py) and offline
(:func:`build_priors`), so an offline evaluation scores exactly what serving would.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

IGNORED_REASONS = ("capped", "unshown", "client")
SessionKey = tuple[str, str, str]  # (query key, doc_id, session)


@dataclass(frozen=True)
class PriorParams:
    half_life_s: float
    session_cap: float
    client_sessions: int
    propensities: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.propensities or not all(0 < p <= 1 for p in self.propensities):
            raise ValueError(f"propensities must lie in (0, 1], not {self.propensities}")

    @classmethod
    def from_settings(cls, settings: Any) -> PriorParams:
        return cls(
            half_life_s=settings.click_memory_half_life_s,
            session_cap=settings.click_memory_session_cap,
            client_sessions=settings.click_memory_client_sessions,
            propensities=tuple(settings.click_memory_propensities),
        )


@dataclass(frozen=True)
class ClickEvent:
    """One feedback event as the prior sees it."""

    feedback_id: int
    query_key: str
    doc_id: str
    kind: str  # click | relevant | not_relevant
    at: datetime
    session: str
    client: str
    shown_rank: int | None  # where its search showed doc_id; None: it did not show it


@dataclass(frozen=True)
class SessionEvidence:
    """One session's running value for one (query, document), decayed to ``as_of``."""

    client: str
    evidence: float
    as_of: datetime
    events: int


@dataclass(frozen=True)
class Prior:
    """What the memory knows of one (query, document): evidence decayed to ``as_of``, and how
    many distinct sessions gave it."""

    evidence: float
    sessions: int
    as_of: datetime

    def at(self, now: datetime, half_life_s: float) -> Prior:
        """The same prior, decayed to ``now``."""
        return replace(self, evidence=decay(self.evidence, self.as_of, now, half_life_s), as_of=now)


def decay(value: float, since: datetime, until: datetime, half_life_s: float) -> float:
    """``value`` observed at ``since`` as it counts at ``until`` (earlier: it grows back)."""
    return value * 0.5 ** ((until - since).total_seconds() / half_life_s)


def propensity(rank: int, propensities: tuple[float, ...]) -> float:
    """P(a user examines rank ``rank``); ranks past the list take its last value."""
    return propensities[min(rank, len(propensities)) - 1]


def event_weight(kind: str, rank: int, params: PriorParams) -> float:
    """What one event adds before the session cap: a debiased click, or a whole-session mark."""
    if kind == "click":
        return 1.0 / propensity(rank, params.propensities)
    if kind == "relevant":
        return params.session_cap
    if kind == "not_relevant":
        return -params.session_cap
    raise ValueError(f"unknown feedback kind {kind!r}")


def add_evidence(
    state: SessionEvidence, weight: float, at: datetime, params: PriorParams
) -> tuple[SessionEvidence, float]:
    """(the session's new value, the share of ``weight`` the cap let through). An event older
    than the session's latest one (two replicas' clocks) is decayed to the latest instead."""
    cap, half_life = params.session_cap, params.half_life_s
    if at >= state.as_of:
        base, added, as_of = decay(state.evidence, state.as_of, at, half_life), weight, at
    else:
        base, added, as_of = state.evidence, decay(weight, at, state.as_of, half_life), state.as_of
    value = max(-cap, min(cap, base + added))
    kept = (value - base) / added if added else 1.0
    return SessionEvidence(state.client, value, as_of, state.events + 1), kept


class PriorFold:
    """Folds events, in feedback order, into per-session values; counts what it ignores.

    ``sessions`` must hold every known session of each (query, document, client) the events
    touch, and of each (query, document, session): the client limit counts them.
    """

    def __init__(
        self, params: PriorParams, sessions: Mapping[SessionKey, SessionEvidence] | None = None
    ):
        self.params = params
        self.sessions: dict[SessionKey, SessionEvidence] = dict(sessions or {})
        self.changed: set[SessionKey] = set()
        self.ignored: Counter[str] = Counter()
        self.folded = 0
        self._per_client: Counter[tuple[str, str, str]] = Counter(
            (q, d, s.client) for (q, d, _), s in self.sessions.items()
        )

    def add(self, event: ClickEvent) -> str | None:
        """Fold one event; the reason it was ignored, or None when it counted."""
        self.folded += 1
        if event.shown_rank is None:
            return self._ignore("unshown")
        key = (event.query_key, event.doc_id, event.session)
        state = self.sessions.get(key)
        if state is None:
            per_client = (event.query_key, event.doc_id, event.client)
            if self._per_client[per_client] >= self.params.client_sessions:
                return self._ignore("client")
            self._per_client[per_client] += 1
            state = SessionEvidence(event.client, 0.0, event.at, 0)
        weight = event_weight(event.kind, event.shown_rank, self.params)
        new, kept = add_evidence(state, weight, event.at, self.params)
        self.sessions[key] = new
        self.changed.add(key)
        if state.events and kept < 0.5:  # the session had already given (most of) its cap
            return self._ignore("capped")
        return None

    def _ignore(self, reason: str) -> str:
        self.ignored[reason] += 1
        return reason


def aggregate(sessions: Iterable[SessionEvidence], half_life_s: float) -> Prior | None:
    """The prior of one (query, document) from its sessions' values (None: no session)."""
    sessions = list(sessions)
    if not sessions:
        return None
    as_of = max(s.as_of for s in sessions)
    evidence = sum(decay(s.evidence, s.as_of, as_of, half_life_s) for s in sessions)
    return Prior(evidence, len(sessions), as_of)


def click_event(row: Mapping[str, Any], key: Callable[[str], str]) -> ClickEvent:
    """A feedback row joined with its search (``LogReader.feedback_since``) as an event;
    ``key`` is the one query normalisation (``training.text.query_key``)."""
    session = row["session_id"] or f"search:{row['search_id']}"
    shown = {str(r["doc_id"]): int(r["rank"]) for r in row.get("results") or []}
    return ClickEvent(
        feedback_id=int(row["id"]),
        query_key=key(row["query"]),
        doc_id=str(row["doc_id"]),
        kind=row["kind"],
        at=row["created_at"],
        session=session,
        client=row.get("client") or f"session:{session}",
        shown_rank=shown.get(str(row["doc_id"])),
    )


def build_priors(events: Iterable[ClickEvent], params: PriorParams) -> dict[str, dict[str, Prior]]:
    """query key -> doc_id -> prior, from events alone: what the memory would hold after
    folding them (offline evaluation scores a ranking with and without it)."""
    fold = PriorFold(params)
    for event in sorted(events, key=lambda e: e.feedback_id):
        fold.add(event)
    grouped: dict[tuple[str, str], list[SessionEvidence]] = defaultdict(list)
    for (query, doc_id, _), state in fold.sessions.items():
        grouped[(query, doc_id)].append(state)
    priors: dict[str, dict[str, Prior]] = defaultdict(dict)
    for (query, doc_id), states in grouped.items():
        priors[query][doc_id] = aggregate(states, params.half_life_s)
    return dict(priors)
