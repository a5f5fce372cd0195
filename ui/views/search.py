"""The search page: a query box, dense or hybrid, the top 10 with feedback buttons."""

from __future__ import annotations

import html

import streamlit as st

from cluster.config import get_settings
from ui.client import BackendError, BackendUnavailable
from ui.common import api, apply_style, session_id
from ui.highlight import highlight, snippet

TOP_K = 10
SNIPPET_CHARS = 320
MODES = {"hybrid": "Hybrid (dense + BM25)", "dense": "Dense (two-tower)"}
JUDGEMENTS = {"relevant": "Marked relevant", "not_relevant": "Marked not relevant"}
JUDGE_BUTTONS = {  # kind -> (label, icon)
    "relevant": ("Relevant", ":material/thumb_up:"),
    "not_relevant": ("Not relevant", ":material/thumb_down:"),
}


def run_search(query: str, mode: str) -> None:
    st.session_state.pop("search_error", None)
    try:
        st.session_state.last = api().search(query, mode=mode, k=TOP_K, session_id=session_id())
        st.session_state.last_query = query
        st.session_state.sent = {}  # (pid, kind) already sent for this search
        st.session_state.opened = set()
    except BackendUnavailable as exc:
        st.session_state.search_error = ("down", str(exc))
    except BackendError as exc:
        st.session_state.search_error = ("refused", str(exc))


def send_feedback(search_id: str, pid: int, kind: str) -> None:
    """Button callback: record the judgement (or the click) once per result."""
    if kind == "click":
        st.session_state.opened.add(pid)
    if (pid, kind) in st.session_state.sent:
        return
    try:
        api().feedback(search_id, pid, kind)
        st.session_state.sent[(pid, kind)] = True
    except (BackendUnavailable, BackendError) as exc:
        st.session_state.feedback_error = f"Your feedback was not saved: {exc}"


def judgement(pid: int) -> str | None:
    for kind in JUDGEMENTS:
        if (pid, kind) in st.session_state.sent:
            return kind
    return None


def show_result(search_id: str, query: str, result: dict) -> None:
    pid = int(result["pid"])
    opened = pid in st.session_state.opened
    text = result["text"] if opened else snippet(result["text"], SNIPPET_CHARS)
    judged = judgement(pid)
    with st.container(border=True, key=f"result-{search_id}-{pid}"):
        st.html(
            f'<div class="result"><div class="result-rank">{int(result["rank"])}</div>'
            f'<div class="result-body"><div class="result-text">{highlight(text, query)}</div>'
            f'<div class="result-score">score {float(result["score"]):.4f} · passage {pid}'
            "</div></div></div>"
        )
        with st.container(horizontal=True, vertical_alignment="center", gap="small"):
            st.button(
                "Read passage" if not opened else "Opened",
                key=f"click-{search_id}-{pid}",
                icon=":material/open_in_full:",
                on_click=send_feedback,
                args=(search_id, pid, "click"),
                disabled=opened,
            )
            for kind, (label, icon) in JUDGE_BUTTONS.items():
                st.button(
                    label,
                    key=f"{kind}-{search_id}-{pid}",
                    icon=icon,
                    on_click=send_feedback,
                    args=(search_id, pid, kind),
                    disabled=judged is not None,
                )
            if judged:
                st.caption(f":material/check: {JUDGEMENTS[judged]}")


apply_style()
session_id()
st.session_state.setdefault("sent", {})
st.session_state.setdefault("opened", set())

st.title("Two-Tower Search")
st.caption("Semantic search over MS MARCO passages, learning from your feedback.")

with st.form("search-form", border=False):
    query_col, button_col = st.columns([5, 1], vertical_alignment="bottom")
    query = query_col.text_input(
        "Query", key="query", placeholder="e.g. what is the boiling point of water"
    )
    submitted = button_col.form_submit_button(
        "Search", type="primary", icon=":material/search:", width="stretch"
    )
    modes = list(MODES)
    mode = st.radio(
        "Retrieval",
        modes,
        index=modes.index(get_settings().default_mode),
        format_func=MODES.get,
        horizontal=True,
        key="mode",
    )

if submitted:
    if query.strip():
        run_search(query.strip(), mode)
    else:
        st.session_state.search_error = ("refused", "Type a few words to search for.")

error = st.session_state.get("search_error")
if error:
    kind, message = error
    if kind == "down":
        st.error(
            f"**The search service is unavailable right now.** {message} "
            "Please try again in a moment.",
            icon=":material/cloud_off:",
        )
    else:
        st.warning(message, icon=":material/info:")

if message := st.session_state.pop("feedback_error", None):
    st.warning(message, icon=":material/warning:")

last = st.session_state.get("last")
if last and not error:
    results = last["results"]
    version = html.escape(str(last["version"]))
    mode_name = html.escape(MODES.get(last["mode"], str(last["mode"])))
    st.html(
        f'<div class="result-meta">{len(results)} results · '
        f"{float(last['latency_ms']):.0f} ms · model <code>{version}</code> · {mode_name}</div>"
    )
    if not results:
        st.info("No passage matched this query.")
    for result in results:
        show_result(last["search_id"], st.session_state.last_query, result)
