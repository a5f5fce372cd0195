"""The page logic (Streamlit AppTest) against the real serving app on a local Ray, with its
logs in the real PostgreSQL."""

from __future__ import annotations

import time

import psycopg
import pytest
from streamlit.testing.v1 import AppTest

from cluster.config import REPO_ROOT, get_settings
from ui.common import widget_key

SEARCH_PAGE = str(REPO_ROOT / "ui/views/search.py")
STATUS_PAGE = str(REPO_ROOT / "ui/views/status.py")


@pytest.fixture
def pages_use(serving, monkeypatch):
    monkeypatch.setenv("TWOTOWER_API_URL", serving.api_base_url)
    get_settings.cache_clear()
    yield serving
    get_settings.cache_clear()


def feedback_kinds(dsn: str, search_id: str, want: int, timeout: float = 20) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(dsn) as conn:
            kinds = [
                row[0]
                for row in conn.execute(
                    "SELECT kind FROM feedback WHERE search_id = %s ORDER BY id", (search_id,)
                )
            ]
        if len(kinds) >= want or time.monotonic() > deadline:
            return kinds
        time.sleep(0.3)


def test_search_shows_ten_results_and_records_judgements(pages_use):
    at = AppTest.from_file(SEARCH_PAGE, default_timeout=60).run()
    # The corpus the live version searches, and its size, from GET /version.
    assert "**msmarco** (2,000 documents)" in at.caption[0].value
    at.text_input(key="query").input("what causes botulism")
    assert at.radio(key="mode").value == "hybrid"  # the default mode, as the API's
    at.button[0].click().run()
    assert not at.exception and not at.error

    last = at.session_state["last"]
    assert len(last["results"]) == 10 and last["mode"] == "hybrid" and last["version"]
    search_id, first = last["search_id"], last["results"][0]

    at.button(key=widget_key("relevant", search_id, first["doc_id"])).click().run()
    at.button(key=widget_key("click", search_id, first["doc_id"])).click().run()
    assert not at.exception
    assert at.button(key=widget_key("not_relevant", search_id, first["doc_id"])).disabled
    assert feedback_kinds(pages_use.dsn, search_id, want=2) == ["relevant", "click"]


def test_refused_query_is_explained_not_crashed(pages_use):
    at = AppTest.from_file(SEARCH_PAGE, default_timeout=60).run()
    at.text_input(key="query").input("x" * (pages_use.max_query_chars + 50))
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert at.warning, "a too-long query gets the API's message as a warning"


def test_status_page_shows_the_live_version(pages_use):
    at = AppTest.from_file(STATUS_PAGE, default_timeout=60).run()
    assert not at.exception and not at.error
    texts = " ".join(m.value for m in at.markdown)
    assert "`v" in texts  # the live version id, e.g. `v20261127-041502-ab12`
    assert len(at.dataframe) >= 1  # recent versions
    labels = [m.label for m in at.metric]
    assert "Queries it moves" in labels  # the click memory's reach, from GET /click-memory
