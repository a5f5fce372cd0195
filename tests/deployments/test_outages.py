"""S3 or PostgreSQL down: every route that needs it answers a quick 503 that names it, and
searches go on. The real servers of the session are stopped and started again."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

QUICK_S = 4.0  # the ingress gives S3 and PostgreSQL 2 s a call (dependency_timeout_s)


@pytest.fixture(scope="module")
def api(serving):
    with httpx.Client(base_url=serving.api_base_url, timeout=30) as client:
        yield client


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_s3_down_is_a_quick_503_that_names_it(api, s3):
    search = api.post("/search", json={"query": "what is botulism", "k": 3})
    assert search.status_code == 200
    s3.stop()
    try:
        response, seconds = timed(lambda: api.get("/versions"))
        print(
            f"\nS3 down: GET /versions {response.status_code} in {seconds:.2f} s: {response.text}"
        )
        assert response.status_code == 503, response.text
        assert "artifact store (S3) unavailable" in response.json()["detail"]
        assert seconds < QUICK_S, f"/versions took {seconds:.1f} s"
        # Serving needs S3 only to load a version: searches go on.
        assert api.post("/search", json={"query": "flu", "k": 3}).status_code == 200
    finally:
        s3.start()
    assert api.get("/versions").status_code == 200


def test_postgres_down_is_a_quick_503_that_names_it(api, postgres):
    search = api.post("/search", json={"query": "symptoms of the flu", "k": 3}).json()
    postgres.stop()
    try:
        response, seconds = timed(lambda: api.get("/runs"))
        print(f"\nPostgreSQL down: GET /runs {response.status_code} in {seconds:.2f} s")
        assert response.status_code == 503, response.text
        assert "log store (PostgreSQL) unavailable" in response.json()["detail"]
        assert seconds < QUICK_S, f"/runs took {seconds:.1f} s"
        unknown = {"search_id": str(uuid.uuid4()), "doc_id": "1", "kind": "click"}
        response, seconds = timed(lambda: api.post("/feedback", json=unknown))
        print(f"PostgreSQL down: POST /feedback {response.status_code} in {seconds:.2f} s")
        assert response.status_code == 503, response.text  # not "unknown search_id"
        assert "PostgreSQL" in response.json()["detail"] and seconds < QUICK_S
        # Searches are logged through the disk buffer meanwhile.
        assert api.post("/search", json={"query": "flu", "k": 3}).status_code == 200
        # Feedback on a search the answering replica remembers is still taken (buffered);
        # one it does not remember cannot be checked: 503. Never a 404.
        doc_id = search["results"][0]["doc_id"]
        known = {"search_id": search["search_id"], "doc_id": doc_id, "kind": "click"}
        assert api.post("/feedback", json=known).status_code in (200, 503)
    finally:
        postgres.start()
    assert api.get("/runs").status_code == 200
