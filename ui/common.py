"""What both pages share: the API client for the configured backend, the session id, the look."""

from __future__ import annotations

import uuid

import streamlit as st

from cluster.config import get_settings
from ui.client import SearchApi

STYLE = """
<style>
.result-text { font-size: 1.02rem; line-height: 1.55; margin: 0.1rem 0 0.4rem 0; }
.result-text mark { background: #fde68a; color: inherit; padding: 0 0.12em; border-radius: 3px; }
.result-rank { font-size: 1.35rem; font-weight: 700; color: #6b7280; text-align: right; }
.result-score { font-family: ui-monospace, monospace; color: #4b5563; font-size: 0.85rem; }
.result-meta { color: #6b7280; font-size: 0.9rem; }
</style>
"""


def api() -> SearchApi:
    """One client per backend URL for the whole server process (it keeps its connections)."""
    return _client(get_settings().api_base_url)


@st.cache_resource(show_spinner=False)
def _client(base_url: str) -> SearchApi:
    return SearchApi(base_url)


def prometheus_url() -> str:
    return get_settings().prometheus_base_url


def session_id() -> str:
    """A random id per browser session, sent with every search so feedback can be grouped."""
    if "session_id" not in st.session_state:
        st.session_state.session_id = uuid.uuid4().hex
    return st.session_state.session_id


def apply_style() -> None:
    st.html(STYLE)
