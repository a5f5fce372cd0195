"""Feedback rate limits in the ingress, per client and per session: beyond them a 429 that says
which. The limits are lowered in place (user_config, no restart) for the test and put back.

They are per ingress replica, so with two replicas a client may get up to twice a burst
through; each test sends well beyond that."""

from __future__ import annotations

import httpx
import pytest

from deployments.rollout import deploy

BURST = 3
SENT = 16  # > BURST x 2 replicas + what refills at 0.1/s while they are sent


@pytest.fixture(scope="module")
def api(serving):
    with httpx.Client(base_url=serving.api_base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def low_limits(serving):
    slow = {"feedback_client_rate_per_s": 0.1, "feedback_client_burst": BURST,
            "feedback_session_rate_per_s": 0.1, "feedback_session_burst": BURST}  # fmt: skip
    deploy(serving.model_copy(update=slow))
    try:
        yield
    finally:
        deploy(serving)


def feedback_for(api, search: dict, client: str) -> httpx.Response:
    event = {
        "search_id": search["search_id"],
        "doc_id": search["results"][0]["doc_id"],
        "kind": "click",
    }
    return api.post("/feedback", json=event, headers={"x-real-ip": client})


def test_one_client_gets_a_429_beyond_its_rate(api, low_limits):
    searches = [
        api.post("/search", json={"query": "flu", "k": 1, "session_id": f"c-{i}"}).json()
        for i in range(SENT)
    ]
    codes = [feedback_for(api, s, "198.51.100.7").status_code for s in searches]
    assert codes[:BURST] == [200] * BURST and 429 in codes, codes
    limited = feedback_for(api, searches[-1], "198.51.100.7")
    assert limited.status_code == 429
    assert limited.json()["detail"].startswith("too much feedback from this client")
    assert int(limited.headers["retry-after"]) >= 1
    # Another client is not held back by the first one's flood.
    assert feedback_for(api, searches[0], "198.51.100.8").status_code == 200


def test_one_session_gets_a_429_beyond_its_rate(api, low_limits):
    search = api.post("/search", json={"query": "flu", "k": 1, "session_id": "flooder"}).json()
    # A new client address for every event: only the session limit can stop them.
    responses = [feedback_for(api, search, f"203.0.113.{i}") for i in range(SENT)]
    codes = [r.status_code for r in responses]
    assert codes[:BURST] == [200] * BURST and 429 in codes, codes
    detail = next(r.json()["detail"] for r in responses if r.status_code == 429)
    assert detail.startswith("too much feedback from this session")
