"""What both pages share: the API client for the configured backend, the session id, the look."""

from __future__ import annotations

import hashlib
import uuid

import streamlit as st

from cluster.config import get_settings
from ui.client import SearchApi

STYLE = """
<style>
.result { display: flex; gap: 0.9rem; align-items: flex-start; }
.result-rank { flex: 0 0 2rem; height: 2rem; border-radius: 50%; background: #eef2ff;
  color: #3730a3; font-weight: 700; display: flex; align-items: center; justify-content: center; }
.result-body { flex: 1; min-width: 0; }
.result-text { font-size: 1rem; line-height: 1.6; }
.result-text mark { background: #fef08a; color: inherit; padding: 0 0.1em; border-radius: 3px; }
.result-score { margin-top: 0.35rem; color: #6b7280; font-size: 0.8rem;
  font-variant-numeric: tabular-nums; }
.result-meta { color: #6b7280; font-size: 0.9rem; margin: 0.2rem 0 0.4rem 0; }
</style>
"""


def widget_key(kind: str, search_id: str, doc_id: str) -> str:
    """A widget key for a result: document ids are the corpus's own strings, so the key holds
    a digest of the id (Streamlit turns keys into CSS class names)."""
    return f"{kind}-{search_id}-{hashlib.sha256(doc_id.encode()).hexdigest()[:16]}"


def api() -> SearchApi:
    """One client per backend URL for the whole server process (it keeps its connections)."""
    return _client(get_settings().api_base_url)


@st.cache_resource(show_spinner=False)
def _client(base_url: str) -> SearchApi:
    return SearchApi(base_url, client_header=get_settings().client_ip_header)


def visitor() -> str | None:
    """The browser's address: nginx's X-Real-IP when the website sits behind it, else the
    connection's own (None for a browser on this machine)."""
    for address in (st.context.headers.get("X-Real-IP"), st.context.ip_address):
        if isinstance(address, str) and address:  # not in a test run of the page (AppTest)
            return address
    return None


def prometheus_url() -> str:
    return get_settings().prometheus_base_url


def session_id() -> str:
    """A random id per browser session, sent with every search so feedback can be grouped."""
    if "session_id" not in st.session_state:
        st.session_state.session_id = uuid.uuid4().hex
    return st.session_state.session_id


def apply_style() -> None:
    st.html(STYLE)
