"""The status page: traffic, the live version and its metrics, recent versions, quality over
time, the click memory, learning-loop runs."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ui.client import BackendError, BackendUnavailable, prometheus_query
from ui.common import api, apply_style, prometheus_url
from ui.quality_chart import describe, quality_chart

# Ray Serve's own HTTP metrics (exported by every Ray node, scraped by Prometheus).
TRAFFIC_QUERIES = {
    "Requests / s": "sum(rate(ray_serve_num_http_requests_total[1m]))",
    "p50 latency": "histogram_quantile(0.5, sum by (le) "
    "(rate(ray_serve_http_request_latency_ms_bucket[5m])))",
    "p99 latency": "histogram_quantile(0.99, sum by (le) "
    "(rate(ray_serve_http_request_latency_ms_bucket[5m])))",
    # `or vector(0)`: no 5xx series at all means no server error, not "no data".
    "Server errors": '(sum(rate(ray_serve_num_http_requests_total{status_code=~"5.."}[5m])) '
    "or vector(0)) / sum(rate(ray_serve_num_http_requests_total[5m]))",
}
METRICS_PER_ROW = 4
UNITS = {"Requests / s": "{:.2f}", "p50 latency": "{:.0f} ms", "p99 latency": "{:.0f} ms"}


def rows(payload: Any, key: str) -> list[dict]:
    """The list inside a response, whether the API sent `[...]` or `{key: [...]}`."""
    if isinstance(payload, dict):
        payload = payload.get(key, [])
    return [row for row in payload or [] if isinstance(row, dict)]


def flat(row: dict) -> dict:
    """One table row: nested metrics become their own columns (`dev.mrr@10`)."""
    out: dict = {}
    for name, value in row.items():
        if isinstance(value, dict):
            for sub, subvalue in flat(value).items():
                out[f"{sub}" if name == "metrics" else f"{name}.{sub}"] = subvalue
        elif isinstance(value, list):
            out[name] = ", ".join(map(str, value))
        else:
            out[name] = value
    return out


def show_traffic() -> None:
    st.subheader("Traffic")
    values = {}
    try:
        for label, promql in TRAFFIC_QUERIES.items():
            values[label] = prometheus_query(prometheus_url(), promql)
    except BackendUnavailable as exc:
        st.info(
            f"Metrics are unavailable: {exc} Start it with `twotower up`.",
            icon=":material/query_stats:",
        )
        return
    for column, (label, value) in zip(st.columns(len(values)), values.items(), strict=True):
        if value is None:
            shown = "–"
        elif label == "Server errors":
            shown = f"{value:.1%}"
        else:
            shown = UNITS[label].format(value)
        column.metric(label, shown)
    st.caption(f"From Prometheus at {prometheus_url()} over the last minutes.")


def show_quality(versions: list[dict], runs: list[dict]) -> None:
    st.subheader("Quality over time")
    chart = quality_chart(versions, runs)
    if chart is None:
        st.caption("No version has evaluation metrics to draw yet.")
        return
    st.altair_chart(chart, width="stretch")
    seen = describe(versions, runs)
    st.caption(
        f"Points: the evaluated versions ({seen['versions']}). Dashed lines: the runs of the "
        f"learning loop ({seen['runs']}), coloured by outcome. Hover for details."
    )


def show_versions() -> list[dict]:
    payload = api().versions()
    versions = rows(payload, "versions")
    live = payload.get("live") if isinstance(payload, dict) else None
    live = live or next((v.get("version") for v in versions if v.get("live")), None)

    st.subheader("Live version")
    live_row = next((v for v in versions if v.get("version") == live), None)
    if live is None:
        st.warning("No version is live yet.")
    else:
        st.markdown(f"`{live}`")
        metrics = (live_row or {}).get("metrics") or {}
        numbers = {k: v for k, v in flat({"metrics": metrics}).items() if _is_number(v)}
        quality = {k: v for k, v in numbers.items() if "@" in k}  # MRR@10, nDCG@10, R@100
        numbers = quality or numbers
        shown = list(numbers.items())[:12]
        for start in range(0, len(shown), METRICS_PER_ROW):  # rows of 4: values stay readable
            row = shown[start : start + METRICS_PER_ROW]
            for column, (name, value) in zip(st.columns(METRICS_PER_ROW), row, strict=False):
                column.metric(name, f"{value:.3f}" if isinstance(value, float) else value)
        if not numbers:
            st.caption("This version has no evaluation metrics.")

    st.subheader("Recent versions")
    if versions:
        st.dataframe([flat(v) for v in versions], hide_index=True, width="stretch")
    else:
        st.caption("The artifact store has no version yet.")
    return versions


RUN_COLUMNS = {
    "started_at": "started",
    "status": "outcome",
    "parent_version": "from",
    "candidate_version": "candidate",
    "events_used": "events",
    "reason": "why",
}


def run_row(run: dict) -> dict:
    """The columns a person reads; the run's full metrics stay in the API and the log store."""
    row = {label: run.get(key) for key, label in RUN_COLUMNS.items() if key in run}
    return row or flat(run)


def show_click_memory() -> None:
    st.subheader("Click memory")
    memory = api().click_memory()
    if not memory.get("enabled"):
        st.caption("The click memory is off (TWOTOWER_CLICK_MEMORY_ENABLED=false).")
        return
    ignored = sum((memory.get("ignored") or {}).values())
    values = {
        "Queries it moves": memory.get("queries", 0),
        "Results it moves": memory.get("documents", 0),
        "Feedback counted": memory.get("folded", 0),
        "Feedback ignored": ignored,
    }
    for column, (label, value) in zip(st.columns(len(values)), values.items(), strict=True):
        column.metric(label, f"{value:,}")
    st.caption(
        "Clicks and marks of earlier searchers, blended into the ranking of a query asked "
        "before; ignored: beyond one session's cap, one client's sessions, or never shown."
    )


def show_runs(runs: list[dict]) -> None:
    st.subheader("Learning-loop runs")
    if runs:
        st.dataframe([run_row(r) for r in runs], hide_index=True, width="stretch")
    else:
        st.caption("The learning loop has not run yet.")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


apply_style()
st.title("Status")
show_traffic()
try:
    versions = show_versions()
    runs = rows(api().runs(), "runs")
    show_quality(versions, runs)
    show_click_memory()
    show_runs(runs)
except BackendUnavailable as exc:
    st.error(f"**The search service is unavailable right now.** {exc}", icon=":material/cloud_off:")
except BackendError as exc:
    st.error(f"The search service refused the status request: {exc}", icon=":material/cloud_off:")
