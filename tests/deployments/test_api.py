"""The HTTP API of the deployed app (real Ray Serve, real S3, real PostgreSQL)."""

from __future__ import annotations

import time

import httpx
import numpy as np
import psycopg
import pytest

from deployments.rollout import deploy
from training.index import load_shards, search_shards
from training.model import QueryEncoder

QUERIES = ["what is botulism", "how long should you boil an egg", "symptoms of the flu"]


@pytest.fixture(scope="module")
def api(serving):
    with httpx.Client(base_url=serving.api_base_url, timeout=30) as client:
        yield client


def test_search_returns_the_same_ten_results_as_an_in_process_search(api, tiny_version):
    _, version, version_dir = tiny_version
    encoder, shards = QueryEncoder.load(version_dir), load_shards(version_dir)
    scores, ids = search_shards(shards, encoder.encode(QUERIES), 10)
    for i, query in enumerate(QUERIES):
        response = api.post("/search", json={"query": query, "mode": "dense"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["version"] == version and body["mode"] == "dense"
        assert body["latency_ms"] > 0 and len(body["search_id"]) == 36
        results = body["results"]
        assert [r["rank"] for r in results] == list(range(1, 11))
        assert [r["doc_id"] for r in results] == ids[i].tolist()
        np.testing.assert_allclose([r["score"] for r in results], scores[i], rtol=1e-4)
        assert all(r["text"] for r in results)


def test_hybrid_mode_and_k(api):
    response = api.post("/search", json={"query": "botulism bacteria", "k": 25, "mode": "hybrid"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "hybrid" and len(body["results"]) == 25
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    # BM25 pulls in passages that literally say "botulism"
    assert any("botulism" in r["text"].lower() for r in body["results"][:5])


def test_a_search_without_a_mode_gets_the_configured_default_and_says_so(api, serving):
    assert serving.default_mode == "hybrid"  # the shipped default: it ranks best on dev
    asked = api.post("/search", json={"query": "botulism bacteria", "k": 25}).json()
    hybrid = api.post("/search", json={"query": "botulism bacteria", "k": 25, "mode": "hybrid"})
    assert asked["mode"] == "hybrid"
    assert [r["doc_id"] for r in asked["results"]] == [
        r["doc_id"] for r in hybrid.json()["results"]
    ]


def test_search_is_logged_and_feedback_accepted(api, serving):
    body = api.post("/search", json={"query": "symptoms of the flu", "session_id": "s-1"}).json()
    shown = body["results"][2]["doc_id"]
    response = api.post(
        "/feedback", json={"search_id": body["search_id"], "doc_id": shown, "kind": "click"}
    )
    assert response.status_code == 200 and response.json() == {"ok": True}
    deadline = time.monotonic() + 20
    rows = []
    while time.monotonic() < deadline and not rows:
        with psycopg.connect(serving.dsn) as conn:
            rows = conn.execute(
                "SELECT f.doc_id, f.kind, f.rank FROM feedback f WHERE f.search_id = %s",
                (body["search_id"],),
            ).fetchall()
        time.sleep(0.2)
    assert rows == [(shown, "click", 3)]


@pytest.mark.parametrize(
    ("payload", "status", "phrase"),
    [
        ({"query": ""}, 422, "empty"),
        ({"query": "   \t\n "}, 422, "empty"),
        ({"query": "x" * 513}, 422, "limit is 512"),
        ({"query": "flu", "k": 0}, 422, "between 1 and 100"),
        ({"query": "flu", "k": 101}, 422, "between 1 and 100"),
        ({"query": "flu", "k": "ten"}, 422, "k"),
        ({"query": "flu", "mode": "sparse"}, 422, "mode"),
        ({"k": 10}, 422, "query"),
        ({"query": 42}, 422, "query"),
    ],
)
def test_bad_search_input_gets_a_4xx_with_a_message(api, payload, status, phrase):
    response = api.post("/search", json=payload)
    assert response.status_code == status, response.text
    assert phrase in response.json()["detail"]


@pytest.mark.parametrize(
    "raw",
    [b'{"query": "flu"', b"not json at all", b'{"query": "caf\xe9"}', b"\xff\xfe\x00garbage"],
)
def test_malformed_or_non_utf8_bodies_get_a_4xx(api, raw):
    response = api.post("/search", content=raw, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]


def test_lone_surrogate_in_the_query_gets_a_422(api):
    raw = b'{"query": "bad \\udcff surrogate"}'  # valid JSON, not encodable as UTF-8
    response = api.post("/search", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422 and "UTF-8" in response.json()["detail"]


def test_bad_feedback_gets_a_4xx(api):
    body = api.post("/search", json={"query": "capital of france", "k": 5}).json()
    shown = {r["doc_id"] for r in body["results"]}
    not_shown = next(str(p) for p in range(10**6) if str(p) not in shown)
    sid = body["search_id"]
    cases = [
        (
            {"search_id": "0c1f9f6e-3c0e-4d5e-9a53-2f3a3c9b0d11", "doc_id": "1", "kind": "click"},
            404,
        ),
        ({"search_id": sid, "doc_id": not_shown, "kind": "click"}, 404),
        ({"search_id": sid, "doc_id": next(iter(shown)), "kind": "like"}, 422),
        ({"search_id": "not-a-uuid", "doc_id": "1", "kind": "click"}, 422),
        ({"search_id": sid, "doc_id": "", "kind": "click"}, 422),
        ({"search_id": sid, "doc_id": "x" * 257, "kind": "click"}, 422),
        ({"search_id": sid, "pid": 1, "kind": "click"}, 422),  # the old field: named, refused
    ]
    for payload, status in cases:
        response = api.post("/feedback", json=payload)
        assert response.status_code == status, (payload, response.text)
        assert response.json()["detail"]


@pytest.mark.parametrize(
    ("payload", "phrase"),
    [
        ({"query": "flu", "k": "10"}, "k must be a JSON integer, not a string ('10')"),
        ({"query": "flu", "k": True}, "k must be a JSON integer, not a boolean (true)"),
        ({"query": "flu", "k": 2.5}, "k must be a JSON integer, not a fractional number (2.5)"),
        ({"query": "flu", "kk": 3}, "kk is not a field of this request"),
        ([{"query": "flu"}], "the body must be a JSON object, not an array"),
    ],
)
def test_types_are_strict_and_the_422_says_what_was_sent(api, payload, phrase):
    response = api.post("/search", json=payload)
    assert response.status_code == 422, response.text
    assert response.json() == {"detail": phrase}


def test_a_whole_number_with_a_fraction_is_an_integer_as_json_schema_says(api):
    response = api.post("/search", json={"query": "flu", "k": 3.0})
    assert response.status_code == 200, response.text
    assert len(response.json()["results"]) == 3


@pytest.mark.parametrize(
    ("raw", "phrase"),
    [
        (b'{"query": "flu", "k": ' + b"9" * 5000 + b"}", "a JSON number has 5000 characters"),
        (b'{"query": "flu", "k": 1e999}', "out of range"),
        (b'{"query": "flu", "k": NaN}', "NaN is not a JSON value"),
        (b'{"query": "flu", "x": ' + b"[" * 33 + b"]" * 33 + b"}", "nests deeper than 32 levels"),
        (b"[" * 30_000 + b"]" * 30_000, "nests deeper than 32 levels"),
        (b'{"query": "caf\xe9"}', "not UTF-8"),
    ],
)
def test_json_too_deep_or_with_huge_numbers_gets_a_400(api, raw, phrase):
    response = api.post("/search", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert phrase in response.json()["detail"]


def test_bodies_over_the_limit_get_a_413_with_or_without_a_length(api, serving):
    big = b'{"search_id": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    response = api.post("/feedback", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    assert str(serving.max_body_bytes) in response.json()["detail"]

    def chunks():  # no Content-Length: the ingress counts what arrives
        for _ in range(100):
            yield b" " * 1024

    chunked = api.post("/search", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413, chunked.text


def test_a_body_that_is_not_json_gets_a_415(api):
    response = api.post("/search", content=b"query=flu", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert response.json() == {"detail": "the body is text/plain; send it as application/json"}


def test_unknown_routes_and_methods_answer_a_detail_string(api):
    missing = api.get("/nope")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
    wrong = api.delete("/search")
    assert wrong.status_code == 405 and wrong.json() == {"detail": "Method Not Allowed"}
    assert wrong.headers["allow"] == "POST"
    both = api.request("PATCH", "/documents/a")  # two routes share this path: both are named
    assert both.status_code == 405 and both.headers["allow"] == "DELETE, GET"


def test_the_schema_documents_every_error_as_a_detail_string_and_the_bounds(api):
    schema = api.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    assert components["ErrorBody"]["properties"]["detail"]["type"] == "string"
    assert components["ErrorBody"]["required"] == ["detail"]
    assert "HTTPValidationError" not in components  # its `detail` is a list: not ours
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status in ("400", "404", "413", "415", "422", "429", "503"):
                got = responses[status]["content"]["application/json"]["schema"]
                assert got == error, (method, path, status)
    search = components["SearchRequest"]["properties"]
    assert (search["k"]["minimum"], search["k"]["maximum"]) == (1, 100)
    assert search["query"]["maxLength"] == 512 and search["query"]["pattern"]
    doc_id = components["FeedbackRequest"]["properties"]["doc_id"]
    assert (doc_id["minLength"], doc_id["maxLength"]) == (1, 256)
    limit = schema["paths"]["/versions"]["get"]["parameters"][0]["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, 200)


def test_status_endpoints(api, tiny_version):
    _, version, _ = tiny_version
    assert api.get("/healthz").json() == {"status": "ok", "version": version}
    assert api.get("/version").json()["version"] == version
    versions = api.get("/versions").json()
    assert versions["live"] == version
    assert any(v["version"] == version and v["live"] for v in versions["versions"])
    assert "runs" in api.get("/runs").json()
    for route in ("/versions", "/runs"):
        too_many = api.get(route, params={"limit": 0})
        assert too_many.json() == {"detail": "limit must be between 1 and 200, not 0"}
    assert api.get("/openapi.json").json()["paths"].keys() >= {"/search", "/feedback"}
    assert api.get("/docs").status_code == 200


def test_a_lone_search_does_not_wait_for_the_batch_window(api, serving):
    """The ingress holds a batch open for more searches only while another batch is in flight,
    so a search that arrives alone answers at once even behind a 5-second window."""
    deploy(serving.model_copy(update={"ingress_batch_wait_s": 5.0}))  # in place: user_config
    try:
        for query in QUERIES:
            response = api.post("/search", json={"query": query})
            assert response.status_code == 200, response.text
            assert response.json()["latency_ms"] < 2500
    finally:
        deploy(serving)
