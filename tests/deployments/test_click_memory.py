"""The click memory (docs/click-memory.md): the pure blend, then poisoning and abuse on the real
served app (Ray Serve, PostgreSQL, S3) through its HTTP API on loopback.

Clients are told apart by the ``X-Real-IP`` header the ingress trusts (``client_ip_header``).
The feedback rate limits are raised in place for this module (user_config, no restart), so
every abusive click reaches the memory and only the memory's own guards stand in the way; they
are put back after. Each query is used by one test only: a search answered here after the
memory learned something must not be compared with any other test's expectations.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import psutil
import pytest

from cluster.logstore import FeedbackRecord, LogWriter, ResultItem, SearchRecord
from cluster.logstore.click_prior import Prior
from cluster.logstore.records import client_id
from deployments.app import APP_NAME, INGRESS
from deployments.click_memory import Ranked, moved, pull, rerank
from deployments.rollout import deploy
from deployments.serve_control import serve_details

NOW = datetime(2026, 1, 5, tzinfo=UTC)
HITS = [(0.9, "a", "A"), (0.8, "b", "B"), (0.75, "c", "C"), (0.7, "d", "D"), (0.5, "e", "E")]
LOUD = {"feedback_client_rate_per_s": 10_000.0, "feedback_client_burst": 10_000,
        "feedback_session_rate_per_s": 10_000.0, "feedback_session_burst": 10_000}  # fmt: skip
FOLD_WAIT_S = 30.0
MOVE_WITHIN_S = 5.0  # the bound: a click moves its result within 5 s


# ---------------------------------------------------------------------- the blend, pure
def prior(evidence: float, sessions: int) -> Prior:
    return Prior(evidence, sessions, NOW)


def test_rerank_without_a_prior_that_can_act_changes_nothing():
    same = [Ranked(s, d, t) for s, d, t in HITS]
    assert rerank(HITS, {}, 0.3, 3) == same
    assert rerank(HITS, {"d": prior(12.0, 2)}, 0.3, 3) == same  # too few sessions
    assert rerank(HITS, {"zz": prior(12.0, 5)}, 0.3, 3) == same  # not among the hits
    assert rerank(HITS, {"d": prior(12.0, 5)}, 0.0, 3) == same  # weight 0: off


def test_rerank_lifts_a_remembered_result_and_says_how_hard_it_pulled():
    ranked = rerank(HITS, {"d": prior(12.0, 3)}, 0.3, 3, scale=10.0)
    assert [r.doc_id for r in ranked] == ["a", "d", "b", "c", "e"]
    assert ranked[1].memory == pytest.approx(pull(12.0, 10.0))
    assert all(r.memory is None for r in ranked if r.doc_id != "d")
    # scores are the blend, best first: (1 - w) x min-max score + w x pull
    assert ranked[0].score == pytest.approx(0.7)
    assert ranked[1].score == pytest.approx(0.7 * 0.5 + 0.3 * pull(12.0, 10.0))
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    assert moved(HITS, ranked, 5) and moved(HITS, ranked, 2) and not moved(HITS, ranked, 1)
    # with all the weight on the memory it comes first
    assert rerank(HITS, {"d": prior(12.0, 3)}, 1.0, 3)[0].doc_id == "d"


def test_rerank_pull_saturates_and_negative_evidence_pushes_down():
    assert pull(1e9, 10.0) == pytest.approx(1.0) and pull(-1e9, 10.0) == pytest.approx(-1.0)
    ranked = rerank(HITS, {"a": prior(-12.0, 3)}, 0.3, 3)
    assert [r.doc_id for r in ranked] == ["b", "a", "c", "d", "e"] and ranked[1].memory < 0
    # however strong the memory, a small weight moves a result only past near neighbours
    ranked = rerank(HITS, {"d": prior(1e6, 99)}, 0.2, 3)
    assert [r.doc_id for r in ranked] == ["a", "b", "d", "c", "e"]


def test_rerank_keeps_the_order_of_ties_and_handles_equal_scores():
    flat = [(0.5, "a", "A"), (0.5, "b", "B"), (0.5, "c", "C")]
    assert [r.doc_id for r in rerank(flat, {"c": prior(0.0, 3)}, 0.3, 3)] == ["a", "b", "c"]
    assert [r.doc_id for r in rerank(flat, {"c": prior(5.0, 3)}, 0.3, 3)] == ["c", "a", "b"]
    assert not moved(flat, rerank(flat, {}, 0.3, 3), 3)
    # only the first k count: a change below them is no move
    swapped = rerank(HITS, {"e": prior(3.0, 3)}, 0.05, 3)
    assert [r.doc_id for r in swapped][:3] == ["a", "b", "c"] and not moved(HITS, swapped, 3)


# ---------------------------------------------------------------------- the served app
@pytest.fixture(scope="module")
def api(serving):
    with httpx.Client(base_url=serving.api_base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def loud(serving):
    """Feedback rate limits far above what these tests send, for this module only."""
    deploy(serving.model_copy(update=LOUD))
    try:
        yield serving
    finally:
        deploy(serving)


def search(api, query: str, client: str, session: str | None = None, k: int = 10,
           mode: str = "dense") -> dict:  # fmt: skip
    body = {"query": query, "k": k, "mode": mode, "session_id": session or uuid.uuid4().hex}
    response = api.post("/search", json=body, headers={"x-real-ip": client})
    assert response.status_code == 200, response.text
    return response.json()


def ids(answer: dict) -> list[str]:
    return [r["doc_id"] for r in answer["results"]]


def click(api, answer: dict, doc_id: str, client: str, kind: str = "click") -> int:
    event = {"search_id": answer["search_id"], "doc_id": doc_id, "kind": kind}
    return api.post("/feedback", json=event, headers={"x-real-ip": client}).status_code


def status(api) -> dict:
    response = api.get("/click-memory")
    assert response.status_code == 200, response.text
    return response.json()


def wait_folded(api, folded_at_least: int) -> dict:
    """/click-memory once the answering replica has read that many events folded."""
    deadline = time.monotonic() + FOLD_WAIT_S
    while True:
        now = status(api)
        if now["folded"] >= folded_at_least:
            return now
        assert time.monotonic() < deadline, f"only {now['folded']} events folded: {now}"
        time.sleep(0.2)


def exported(settings, name: str, reason: str, at_least: float, timeout_s: float = 60) -> float:
    """``name``{reason=...} summed over every replica's series in Ray's metrics export, once
    it reaches ``at_least`` (or what it is when the time is up)."""
    url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    deadline = time.monotonic() + timeout_s
    while True:
        lines = httpx.get(url, timeout=5).text.splitlines()
        total = sum(
            float(line.rsplit(" ", 1)[1])
            for line in lines
            if line.startswith(name + "{") and f'reason="{reason}"' in line
        )
        if total >= at_least or time.monotonic() > deadline:
            return total
        time.sleep(1)


def assert_unmoved(api, query: str, baseline: list[str]) -> None:
    """A fresh user's search: the ranking without any memory, no result marked."""
    answer = search(api, query, "192.0.2.250")
    assert ids(answer) == baseline
    assert answer["click_memory_moved"] is False
    assert all(r["memory"] is None for r in answer["results"])


def test_one_session_clicking_an_irrelevant_result_1000_times_moves_nothing(api, loud):
    query, bot = "how many bones are in the human body", "203.0.113.10"
    baseline = ids(search(api, query, "192.0.2.1"))
    before = status(api)
    answer = search(api, query, bot, session="bot-1000")
    target = answer["results"][7]["doc_id"]  # rank 8: no click would lift it honestly
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda _: click(api, answer, target, bot), range(1000)))
    assert codes == [200] * 1000
    after = wait_folded(api, before["folded"] + 1000)
    assert after["ignored"]["capped"] - before["ignored"]["capped"] >= 999
    assert_unmoved(api, query, baseline)
    assert exported(loud, "ray_twotower_click_memory_ignored_total", "capped", 999) >= 999


def test_fifty_sessions_from_one_client_in_a_second_move_nothing(api, loud):
    query, flooder = "what is the average rainfall in seattle", "203.0.113.20"
    baseline = ids(search(api, query, "192.0.2.2"))
    before = status(api)
    answers = [search(api, query, flooder, session=f"flood-{i}") for i in range(50)]
    target = answers[0]["results"][5]["doc_id"]
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda a: click(api, a, target, flooder), answers))
    print(f"\n50 sessions' clicks from one client in {time.monotonic() - started:.2f} s")
    assert codes == [200] * 50
    after = wait_folded(api, before["folded"] + 50)
    assert after["ignored"]["client"] - before["ignored"]["client"] == 49
    assert_unmoved(api, query, baseline)
    assert exported(loud, "ray_twotower_click_memory_ignored_total", "client", 49) >= 49


def test_clicks_on_results_never_shown_count_nothing(api, loud, tmp_path):
    query = "how to lower blood pressure naturally"
    deep = search(api, query, "192.0.2.3", k=20)
    baseline, unshown = ids(deep)[:10], ids(deep)[14]
    before = status(api)
    # through the API: refused, and counted
    answer = search(api, query, "198.51.100.30")
    assert [click(api, answer, unshown, "198.51.100.30") for _ in range(20)] == [404] * 20
    # written to the log store by something other than the ingress: folded, and ignored
    shown = [ResultItem(doc_id=d, rank=i, score=1.0) for i, d in enumerate(baseline, 1)]
    with LogWriter(loud, buffer_dir=tmp_path / "forged") as writer:
        for i in range(30):
            record = SearchRecord(session_id=f"forged-{i}", client=client_id(f"198.51.100.{i}"),
                                  query=query, mode="dense", results=shown)  # fmt: skip
            writer.log_search(record)
            writer.log_feedback(
                FeedbackRecord(search_id=record.id, doc_id=unshown, kind="relevant", rank=1)
            )
        assert writer.flush(30)
    after = wait_folded(api, before["folded"] + 30)
    assert after["ignored"]["unshown"] - before["ignored"]["unshown"] == 30
    assert_unmoved(api, query, baseline)
    assert exported(loud, "ray_twotower_click_memory_ignored_total", "refused", 20) >= 20


def ingress_urls() -> list[str]:
    """Each running SearchIngress replica's own HTTP address (HAProxy forwards to them): found
    by its PID in Serve's status and the loopback port on which it answers /healthz."""
    app = (serve_details() or {}).get("applications", {}).get(APP_NAME) or {}
    replicas = app.get("deployments", {}).get(INGRESS, {}).get("replicas", [])
    urls = []
    for pid in [r["pid"] for r in replicas if r.get("state") == "RUNNING" and r.get("pid")]:
        ports = {
            c.laddr.port
            for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN
        }
        for port in sorted(ports):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    urls.append(f"http://127.0.0.1:{port}")
                    break
            except httpx.HTTPError:
                continue
    return urls


@pytest.mark.parametrize(
    ("mode", "query"),
    [("dense", "what does a cardiologist do"), ("hybrid", "symptoms of vitamin d deficiency")],
)
def test_distinct_sessions_clicking_the_fourth_result_lift_it_within_5s_on_every_replica(
    api, loud, mode, query
):
    replicas = ingress_urls()
    assert len(replicas) == loud.ingress_replicas == 2, replicas
    baseline = ids(search(api, query, "192.0.2.4", mode=mode))
    target = baseline[3]
    for user in range(loud.click_memory_min_sessions):
        client = f"198.51.{len(mode)}.{100 + user}"
        answer = search(api, query, client, session=f"reader-{mode}-{user}", mode=mode)
        assert ids(answer)[3] == target
        assert click(api, answer, target, client) == 200
    clicked = time.monotonic()
    lifted = wait_lifted(replicas, query, mode, target, clicked)
    print(f"\n{mode}: the 4th result lifted after (s): {sorted(lifted.values())}")
    assert len(lifted) == 2, f"lifted on {len(lifted)} of 2 replicas within {FOLD_WAIT_S} s"
    assert max(lifted.values()) <= MOVE_WITHIN_S
    memory = status(api)
    assert memory["enabled"] and memory["queries"] >= 1 and memory["documents"] >= 1


def wait_lifted(replicas: list[str], query: str, mode: str, target: str, since: float) -> dict:
    """{replica: seconds from ``since``} once each replica, asked directly, ranks ``target``
    above 4th and marks it (bounded by FOLD_WAIT_S)."""
    lifted: dict[str, float] = {}
    while len(lifted) < len(replicas) and time.monotonic() - since < FOLD_WAIT_S:
        for url in (u for u in replicas if u not in lifted):
            with httpx.Client(base_url=url, timeout=10) as direct:
                answer = search(direct, query, "192.0.2.5", mode=mode)
            if target in ids(answer)[:3]:
                lifted[url] = time.monotonic() - since
                marked = next(r for r in answer["results"] if r["doc_id"] == target)
                assert answer["click_memory_moved"] and marked["memory"] > 0
        time.sleep(0.1)
    return lifted
