"""The status page's quality plot: every version's dev MRR@10, DL19 nDCG@10 and traffic-weighted
MRR@10 over time, with each learning-loop run's outcome marked where it happened.

Built from what the API already answers (`GET /versions`, `GET /runs`), so the plot shows the
same numbers as the tables under it. A version's metrics come from its manifest: the training
evaluation, and for a learning-loop candidate the gate's evaluation too.
"""

from __future__ import annotations

from typing import Any

import altair as alt

# (evaluation set, metric) -> the series' name on the plot.
SERIES = {
    ("dev", "MRR@10"): "dev MRR@10",
    ("dl19", "nDCG@10"): "DL19 nDCG@10",
    ("traffic", "MRR@10"): "traffic-weighted MRR@10",
}
OUTCOMES = {  # a run's status -> its colour
    "published": "#2e7d32",
    "rejected": "#c62828",
    "failed": "#6d4c41",
    "no_data": "#9e9e9e",
    "skipped": "#bdbdbd",
}


def quality_points(versions: list[dict]) -> list[dict]:
    """One point per version and series it has a number for."""
    points = []
    for row in versions:
        metrics, when = row.get("metrics") or {}, row.get("created_at")
        for (split, metric), series in SERIES.items():
            value = (metrics.get(split) or {}).get(metric)
            if when and isinstance(value, int | float) and not isinstance(value, bool):
                points.append(
                    {
                        "time": when,
                        "version": row.get("version"),
                        "series": series,
                        "value": float(value),
                        "live": bool(row.get("live")),
                    }
                )
    return points


def run_marks(runs: list[dict]) -> list[dict]:
    """One mark per finished learning-loop run: when it started, its outcome and why."""
    return [
        {
            "time": run["started_at"],
            "outcome": run.get("status"),
            "candidate": run.get("candidate_version") or "",
            "why": (run.get("reason") or "")[:200],
        }
        for run in runs
        if run.get("started_at") and run.get("status") in OUTCOMES
    ]


def quality_chart(versions: list[dict], runs: list[dict]) -> alt.LayerChart | None:
    """The plot, or None when no version has a number to draw."""
    points = quality_points(versions)
    if not points:
        return None
    base = alt.Chart(alt.Data(values=points)).encode(
        x=alt.X("time:T", title=None),
        y=alt.Y("value:Q", title="quality", scale=alt.Scale(zero=False)),
        color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=["version:N", "series:N", alt.Tooltip("value:Q", format=".4f"), "live:N"],
    )
    layers = [base.mark_line(point=True)]
    marks = run_marks(runs)
    if marks:
        outcomes = [o for o in OUTCOMES if any(m["outcome"] == o for m in marks)]
        layers.append(
            alt.Chart(alt.Data(values=marks))
            .mark_rule(strokeDash=[4, 3], opacity=0.7)
            .encode(
                x="time:T",
                stroke=alt.Stroke(
                    "outcome:N",
                    title="run",
                    scale=alt.Scale(domain=outcomes, range=[OUTCOMES[o] for o in outcomes]),
                    legend=alt.Legend(orient="bottom"),
                ),
                tooltip=["outcome:N", "candidate:N", "why:N", "time:T"],
            )
        )
    return alt.layer(*layers).resolve_scale(color="independent").properties(height=280)


def describe(versions: list[dict], runs: list[dict]) -> dict[str, Any]:
    """What the plot holds, in numbers (for its caption)."""
    points = quality_points(versions)
    return {
        "versions": len({p["version"] for p in points}),
        "runs": len(run_marks(runs)),
        "series": sorted({p["series"] for p in points}),
    }
