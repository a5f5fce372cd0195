"""The click memory in search: the blend of a query's click prior into its ranking, and the
replica's copy of the priors that it keeps current (docs/click-memory.md).

:func:`rerank` is pure, so an offline evaluation (the learning loop's gate) scores a ranking
with and without the memory exactly as serving ranks it: give it the hits and the query's
priors (``ClickMemoryCache.lookup``, or ``click_prior.build_priors`` from logged events).

:class:`ClickMemory` is one ingress replica's side: every ``click_memory_poll_s`` it asks the
store to fold new feedback (only one replica at a time gets the lock; the others find the work
done) and reads the priors that changed. So a click reaches every replica's ranking within
about two poll intervals of reaching PostgreSQL, and no replica waits on PostgreSQL while it
searches: lookups are in memory, and a PostgreSQL outage only freezes the memory.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cluster.config import Settings
from cluster.logstore.click_memory import (
    CHANGES_PAGE,
    ClickMemoryCache,
    ClickMemoryStore,
    FoldResult,
)
from cluster.logstore.click_prior import IGNORED_REASONS, Prior
from cluster.metrics import click_memory_metrics
from deployments.merge import Hit
from training.text import query_key

log = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class Ranked:
    """A hit after the blend. ``memory`` is the memory's pull on it, in (-1, 1); None when
    the memory knows too little of this document for this query to act."""

    score: float
    doc_id: str
    text: str
    memory: float | None = None


def pull(evidence: float, scale: float) -> float:
    """How hard the memory pulls a document up (or, negative, down): saturates, so no amount
    of evidence outweighs the ranking entirely."""
    return math.tanh(evidence / scale)


def rerank(
    hits: Sequence[Hit],
    prior: Mapping[str, Prior],
    weight: float,
    min_evidence: float,
    scale: float = 10.0,
) -> list[Ranked]:
    """``hits`` (best first) re-ranked by ``(1 - weight) x norm(score) + weight x pull`` where
    norm maps the hits' scores onto [0, 1] (min-max: dense and hybrid scores alike) and the pull
    is that of the document's prior when it has at least ``min_evidence`` sessions, else 0.
    Without any such document the hits come back as they were, scores untouched."""
    pulls = {
        doc_id: pull(p.evidence, scale) for doc_id, p in prior.items() if p.sessions >= min_evidence
    }
    if weight <= 0 or not any(doc_id in pulls for _, doc_id, _ in hits):
        return [Ranked(score, doc_id, text) for score, doc_id, text in hits]
    low = min(score for score, _, _ in hits)
    span = max(score for score, _, _ in hits) - low
    blended = []
    for i, (score, doc_id, text) in enumerate(hits):
        norm = (score - low) / span if span > 0 else 1.0
        memory = pulls.get(doc_id)
        value = (1 - weight) * norm + weight * (memory or 0.0)
        blended.append((-value, i, Ranked(value, doc_id, text, memory)))
    return [ranked for _, _, ranked in sorted(blended)]


def moved(hits: Sequence[Hit], ranked: Sequence[Ranked], k: int) -> bool:
    """Whether the first ``k`` results differ from what the ranking alone would show."""
    return [doc_id for _, doc_id, _ in hits[:k]] != [r.doc_id for r in ranked[:k]]


class ClickMemory:
    """One ingress replica's click memory: its copy of the priors that can act, kept current
    from PostgreSQL by a task on the replica's event loop, and the blend's settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.enabled = settings.click_memory_enabled
        self.store = ClickMemoryStore(settings, query_key)
        self.cache = ClickMemoryCache(
            settings.click_memory_min_sessions, settings.click_memory_half_life_s
        )
        self.metrics = click_memory_metrics()
        self.counts: dict[str, Any] = {}
        self.polled_at: datetime | None = None
        self._task: asyncio.Task | None = None
        self._failing = False

    def start(self) -> None:
        """Follow the store from now on (idempotent; nothing when the memory is off)."""
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            try:
                await self.tick()
                if self._failing:
                    log.info("click memory: PostgreSQL is back, following again")
                self._failing = False
            except Exception as err:  # PostgreSQL down: keep serving what is here
                if not self._failing:
                    log.warning("click memory: cannot follow the store (%s); it stays as is", err)
                self._failing = True
            await asyncio.sleep(self.settings.click_memory_poll_s)

    async def tick(self) -> None:
        """Fold new feedback (if no other replica is at it), then read what changed."""
        folded = await asyncio.to_thread(self.store.fold)
        if folded is not None:
            self._export(folded)
        while True:
            rows = await asyncio.to_thread(self.store.changes_since, self.cache.seq)
            self.cache.apply(rows)  # on the event loop: searches read the cache there
            if len(rows) < CHANGES_PAGE:
                break
        self.counts = await asyncio.to_thread(self.store.counts)
        self.polled_at = datetime.now(UTC)
        self.metrics.queries.set(self.cache.queries())

    def _export(self, folded: FoldResult) -> None:
        if folded.folded:
            self.metrics.folded.inc(folded.folded)
        for reason, n in folded.ignored.items():
            self.metrics.ignored.inc(n, tags={"reason": reason})

    # ------------------------------------------------------------------ in a search
    def prior(self, query: str) -> dict[str, Prior]:
        """The priors of ``query``'s documents that can act now ({} when off or unknown)."""
        if not self.enabled:
            return {}
        return self.cache.lookup(query_key(query), datetime.now(UTC))

    def depth(self, k: int, prior: Mapping[str, Prior]) -> int:
        """How many candidates to rank: more than ``k`` for a remembered query, so a document
        just below the results can come up."""
        return max(k, self.settings.click_memory_depth) if prior else k

    def rank(
        self, hits: Sequence[Hit], prior: Mapping[str, Prior], k: int
    ) -> tuple[list[Ranked], bool]:
        """The first ``k`` results after the blend, and whether the memory moved any."""
        s = self.settings
        ranked = rerank(hits, prior, s.click_memory_weight, s.click_memory_min_sessions,
                        s.click_memory_scale)  # fmt: skip
        changed = moved(hits, ranked, k)
        if changed:
            self.metrics.moved.inc(1)
        return ranked[:k], changed

    def refused(self) -> None:
        """Count a click the API refused because its search did not show the result."""
        self.metrics.ignored.inc(1, tags={"reason": "refused"})

    def status(self) -> dict[str, Any]:
        """This replica's view, for GET /click-memory."""
        s = self.settings
        return {
            "enabled": self.enabled,
            "queries": self.cache.queries(),
            "documents": self.cache.documents(),
            "folded": self.counts.get("folded", 0),
            "ignored": self.counts.get("ignored", dict.fromkeys(IGNORED_REASONS, 0)),
            "watermark": self.counts.get("watermark", 0),
            "folded_at": self.counts.get("folded_at"),
            "polled_at": self.polled_at,
            "settings": {
                "weight": s.click_memory_weight,
                "min_sessions": s.click_memory_min_sessions,
                "half_life_s": s.click_memory_half_life_s,
                "session_cap": s.click_memory_session_cap,
                "client_sessions": s.click_memory_client_sessions,
                "propensities": list(s.click_memory_propensities),
                "scale": s.click_memory_scale,
                "depth": s.click_memory_depth,
            },
        }

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.store.close()
