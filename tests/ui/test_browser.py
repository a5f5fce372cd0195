"""The website in a real headless Chromium, against the real serving app on a local Ray.

Searches, sees 10 results, opens one (a click event), marks another relevant, and then finds
both feedback rows in PostgreSQL; the status page shows the live version and draws the quality
plot. The screenshot is kept in test-artifacts/ for people.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
from playwright.sync_api import expect, sync_playwright

from cluster.config import REPO_ROOT
from ui.server import WebsiteServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
ARTIFACTS = REPO_ROOT / "test-artifacts"
QUERY = "what is the boiling point of water"


@pytest.fixture(scope="module")
def website(serving, free_port, tmp_path_factory):
    server = WebsiteServer(serving, tmp_path_factory.mktemp("website"), port=free_port())
    server.start()
    yield server
    server.stop()


def serving_version(serving) -> str:
    return httpx.get(f"{serving.api_base_url}/version", timeout=10).json()["version"]


def wait_for_rows(dsn: str, sql: str, params: tuple, want: int, timeout: float = 20) -> list:
    """The log store writes in the background (never blocking a search), so poll a little."""
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(dsn) as conn:
            rows = conn.execute(sql, params).fetchall()
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        time.sleep(0.3)


def test_search_click_and_judge_in_a_real_browser(website, serving):
    ARTIFACTS.mkdir(exist_ok=True)
    started = datetime.now(UTC)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # Tall enough for all 10 results: Streamlit scrolls inside the page, not the page.
            page = browser.new_page(viewport={"width": 1280, "height": 2600})
            page.goto(website.url)
            box = page.get_by_label("Query")
            box.fill(QUERY)
            page.get_by_text("Hybrid (dense + BM25)").click()  # BM25's half matches the words
            box.press("Enter")

            cards = page.locator(".result")
            expect(cards).to_have_count(10, timeout=60_000)
            assert page.locator(".result-rank").first.inner_text() == "1"
            assert page.locator(".result-text mark").count() > 0  # query terms highlighted
            meta = page.locator(".result-meta").inner_text()
            assert "10 results" in meta and " ms" in meta and "Hybrid" in meta

            # The search id is in every button's key; the page keeps it in session state,
            # the browser only sees the buttons. Open result 1, mark result 2 relevant.
            page.get_by_role("button", name="Read passage").first.click()
            expect(page.get_by_role("button", name="Opened")).to_have_count(1, timeout=20_000)
            page.get_by_role("button", name="Relevant", exact=True).nth(1).click()
            expect(page.get_by_text("Marked relevant")).to_be_visible(timeout=20_000)
            page.screenshot(path=str(ARTIFACTS / "website-search.png"))

            page.get_by_role("link", name="Status").click()
            expect(page.get_by_text("Learning-loop runs", exact=True)).to_be_visible(timeout=30_000)
            expect(page.get_by_text(serving_version(serving)).first).to_be_visible()
            expect(page.locator("[data-testid='stMetric']").first).to_be_visible()
            # The quality plot is drawn: Vega renders it as SVG, a symbol per version's point.
            plot = page.locator("[data-testid='stVegaLiteChart'] svg.marks").first
            expect(plot).to_be_visible(timeout=30_000)
            box = plot.bounding_box()
            assert box and box["width"] > 200 and box["height"] > 100
            assert plot.locator("g.mark-symbol path").count() >= 1
            page.wait_for_timeout(1500)  # the tables draw on a canvas after they appear
            page.screenshot(path=str(ARTIFACTS / "website-status.png"))
        finally:
            browser.close()

    found = wait_for_rows(
        serving.dsn,
        "SELECT id, session_id FROM searches WHERE query = %s AND created_at >= %s",
        (QUERY, started),
        want=1,
    )
    assert len(found) == 1, found  # exactly the browser's search
    search_id, session_id = found[0]
    assert session_id  # the website sends its session id with every search
    rows = wait_for_rows(
        serving.dsn, "SELECT doc_id, kind FROM feedback WHERE search_id = %s", (search_id,), want=2
    )
    assert sorted(kind for _, kind in rows) == ["click", "relevant"]
