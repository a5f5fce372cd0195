"""The search page: a query box, dense or hybrid, the top 10 with feedback buttons."""

from __future__ import annotations

import html

import streamlit as st

from cluster.config import get_settings
from ui.client import BackendError, BackendUnavailable
from ui.common import api, apply_style, session_id, visitor, widget_key
from ui.highlight import highlight, snippet

TOP_K = 10
SNIPPET_CHARS = 320
MODES = {"hybrid": "Hybrid (dense + BM25)", "dense": "Dense (two-tower)"}
JUDGEMENTS = {"relevant": "Marked relevant", "not_relevant": "Marked not relevant"}
JUDGE_BUTTONS = {  # kind -> (label, icon)
    "relevant": ("Relevant", ":material/thumb_up:"),
    "not_relevant": ("Not relevant", ":material/thumb_down:"),
}


@st.cache_data(ttl=30, show_spinner=False)
def live_corpus(api_url: str) -> dict | None:
    """The live version's corpus, asked again every half minute (so a rollout to another
    corpus shows). Keyed by the backend's URL; a failure raises, and is not cached."""
    return api().version().get("corpus")


def corpus_caption() -> str:
    """What is being searched: the live corpus and its size."""
    try:
        corpus = live_corpus(get_settings().api_base_url)
    except (BackendUnavailable, BackendError):
        corpus = None
    if not corpus:
        return "your documents"
    count = f" ({corpus['count']:,} documents)" if corpus.get("count") else ""
    return f"the corpus **{corpus['name']}**{count}"


def run_search(query: str, mode: str) -> None:
    st.session_state.pop("search_error", None)
    try:
        st.session_state.last = api().search(
            query, mode=mode, k=TOP_K, session_id=session_id(), visitor=visitor()
        )
        st.session_state.last_query = query
        st.session_state.sent = {}  # (doc_id, kind) already sent for this search
        st.session_state.opened = set()
    except BackendUnavailable as exc:
        st.session_state.search_error = ("down", str(exc))
    except BackendError as exc:
        st.session_state.search_error = ("refused", str(exc))


def send_feedback(search_id: str, doc_id: str, kind: str) -> None:
    """Button callback: record the judgement (or the click) once per result."""
    if kind == "click":
        st.session_state.opened.add(doc_id)
    if (doc_id, kind) in st.session_state.sent:
        return
    try:
        api().feedback(search_id, doc_id, kind, visitor=visitor())
        st.session_state.sent[(doc_id, kind)] = True
    except (BackendUnavailable, BackendError) as exc:
        st.session_state.feedback_error = f"Your feedback was not saved: {exc}"


def judgement(doc_id: str) -> str | None:
    for kind in JUDGEMENTS:
        if (doc_id, kind) in st.session_state.sent:
            return kind
    return None


def show_result(search_id: str, query: str, result: dict) -> None:
    doc_id = str(result["doc_id"])
    opened = doc_id in st.session_state.opened
    text = result["text"] if opened else snippet(result["text"], SNIPPET_CHARS)
    judged = judgement(doc_id)
    with st.container(border=True, key=widget_key("result", search_id, doc_id)):
        st.html(
            f'<div class="result"><div class="result-rank">{int(result["rank"])}</div>'
            f'<div class="result-body"><div class="result-text">{highlight(text, query)}</div>'
            f'<div class="result-score">score {float(result["score"]):.4f} · document '
            f"{html.escape(doc_id)}</div></div></div>"
        )
        with st.container(horizontal=True, vertical_alignment="center", gap="small"):
            st.button(
                "Read passage" if not opened else "Opened",
                key=widget_key("click", search_id, doc_id),
                icon=":material/open_in_full:",
                on_click=send_feedback,
                args=(search_id, doc_id, "click"),
                disabled=opened,
            )
            for kind, (label, icon) in JUDGE_BUTTONS.items():
                st.button(
                    label,
                    key=widget_key(kind, search_id, doc_id),
                    icon=icon,
                    on_click=send_feedback,
                    args=(search_id, doc_id, kind),
                    disabled=judged is not None,
                )
            if judged:
                st.caption(f":material/check: {JUDGEMENTS[judged]}")


apply_style()
session_id()
st.session_state.setdefault("sent", {})
st.session_state.setdefault("opened", set())

st.title("Two-Tower Search")
st.caption(f"Semantic search over {corpus_caption()}, learning from your feedback.")

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
