"""The pages when nothing answers: a clear message, never a traceback.

"Down" is real here: the backend URL and the Prometheus port point at a loopback port that was
just closed, so the connection is refused by the kernel.
"""

import socket

import pytest
from streamlit.testing.v1 import AppTest

from cluster.config import REPO_ROOT, get_settings

SEARCH_PAGE = str(REPO_ROOT / "ui/views/search.py")
STATUS_PAGE = str(REPO_ROOT / "ui/views/status.py")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def nothing_answers(monkeypatch):
    port = closed_port()
    monkeypatch.setenv("TWOTOWER_API_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("TWOTOWER_PROMETHEUS_PORT", str(port))
    get_settings.cache_clear()
    yield port
    get_settings.cache_clear()


def test_search_page_says_the_service_is_down(nothing_answers):
    at = AppTest.from_file(SEARCH_PAGE, default_timeout=30).run()
    assert not at.exception
    at.text_input(key="query").input("what is a two tower model")
    at.button[0].click().run()  # the form's submit button
    assert not at.exception
    assert len(at.error) == 1
    assert "unavailable" in at.error[0].value
    assert f"127.0.0.1:{nothing_answers}" in at.error[0].value


def test_empty_query_is_refused_without_calling_anything(nothing_answers):
    at = AppTest.from_file(SEARCH_PAGE, default_timeout=30).run()
    at.text_input(key="query").input("   ")
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert "Type a few words" in at.warning[0].value


def test_status_page_says_backend_and_metrics_are_unavailable(nothing_answers):
    at = AppTest.from_file(STATUS_PAGE, default_timeout=30).run()
    assert not at.exception
    assert "unavailable" in at.error[0].value
    assert any("Metrics are unavailable" in info.value for info in at.info)


def test_session_id_is_kept_across_reruns(nothing_answers):
    at = AppTest.from_file(SEARCH_PAGE, default_timeout=30).run()
    first = at.session_state["session_id"]
    at.text_input(key="query").input("anything")
    at.button[0].click().run()
    assert at.session_state["session_id"] == first and len(first) == 32
