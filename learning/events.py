"""Log-store rows (feedback joined with its search) -> ``FeedbackEvent``s.

The one place that knows the log store's column names, so the triplet code stays pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from learning.triplets import FeedbackEvent


def shown_ids(results: Any) -> tuple[str, ...]:
    """The document ids a search showed, in rank order, from its stored results (jsonb list)."""
    if not results:
        return ()
    items = sorted(results, key=lambda r: r.get("rank", 0)) if isinstance(results, list) else []
    return tuple(str(r["doc_id"]) for r in items)


def events_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[FeedbackEvent]:
    events = []
    for row in rows:
        events.append(
            FeedbackEvent(
                feedback_id=int(row["id"]),
                search_id=str(row["search_id"]),
                session_id=row.get("session_id"),
                query=row["query"],
                shown=shown_ids(row.get("results")),
                searched_at=row["searched_at"],
                doc_id=str(row["doc_id"]),
                kind=row["kind"],
                created_at=row["created_at"],
            )
        )
    return events
