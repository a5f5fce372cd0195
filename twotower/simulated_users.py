"""Simulated users, bots and measurements, each talking to the real HTTP API.

Every simulated session sends its own client address in the header the API trusts from its
front door (``client_ip_header``, loopback only), so the per-client feedback limit sees many
people, as it would in production, not one machine; a session's own limit still applies.
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields

import httpx

from cluster.config import Settings
from learning.traffic import (
    MEASURE_SESSION_PREFIX,
    TrafficDay,
    reciprocal_ranks,
    weighted_mean,
)
from twotower.traffic_plan import BOT_ACTIONS, BotSession, ClickModel, UserSession

FAKE_CLIENTS = ipaddress.ip_network("198.18.0.0/15")  # RFC 2544: benchmark addresses
RETRY_PAUSE_S = 0.2
MAX_RATE_LIMIT_WAITS = 3


class SearchFailed(Exception):
    """A search that failed twice: a connection error, a 5xx or an empty answer."""


class ClickRefused(Exception):
    """The API refused a person's click (a person only clicks what it was shown)."""


@dataclass
class SessionStats:
    sessions: int = 0  # people whose session ran to the end
    searches: int = 0
    clicks: int = 0
    relevant_clicks: int = 0  # clicks on a result judged relevant (grade > 0)
    bots: int = 0
    bot_searches: int = 0
    bot_clicks_accepted: int = 0
    bot_clicks_refused: int = 0  # 404 (never shown) or 429 (too fast)
    retries: int = 0  # searches asked a second time
    failures: list[str] = field(default_factory=list)
    last_click_at: float | None = None  # wall clock (time.time())
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "lock"}

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def clicked(self, relevant: bool) -> None:
        with self.lock:
            self.clicks += 1
            self.relevant_clicks += relevant
            self.last_click_at = time.time()

    def failed(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)


def client_headers(settings: Settings, session_id: str) -> dict[str, str]:
    """A stable made-up client address per session, in the header the API trusts."""
    if not settings.client_ip_header:
        return {}
    offset = int.from_bytes(hashlib.sha256(session_id.encode()).digest()[:4], "big")
    address = FAKE_CLIENTS[offset % FAKE_CLIENTS.num_addresses]
    return {settings.client_ip_header: str(address)}


def _answer(resp: httpx.Response) -> tuple[dict | None, str]:
    """(the answer, None) if it has results, else (None, what was wrong)."""
    if resp.status_code >= 500:
        return None, f"HTTP {resp.status_code}"
    resp.raise_for_status()  # a 4xx is the simulator's own mistake: asking again cannot help
    try:
        answer = resp.json()
    except ValueError:
        return None, "an empty answer"
    return (answer, "") if answer.get("results") else (None, "an answer without results")


def search(client: httpx.Client, body: dict, headers: dict, stats: SessionStats) -> dict:
    """POST /search, asked once more after a connection error, a 5xx or an empty answer (a
    replica that is restarting answers so for a moment) before it counts as a failure."""
    problem = ""
    for attempt in range(2):
        if attempt:
            stats.count("retries")
            time.sleep(RETRY_PAUSE_S)
        try:
            answer, problem = _answer(client.post("/search", json=body, headers=headers))
        except httpx.TransportError as err:
            answer, problem = None, f"{type(err).__name__}: {err}"
        if answer is not None:
            return answer
    raise SearchFailed(f"search {body['query']!r} failed twice: {problem}")


def feedback(
    client: httpx.Client, search_id: str, doc_id: str, headers: dict, *, patient: bool
) -> int:
    """POST a click; its status. A patient (human) clicker waits out a 429 and clicks again."""
    body = {"search_id": search_id, "doc_id": doc_id, "kind": "click"}
    for _ in range(MAX_RATE_LIMIT_WAITS if patient else 1):
        resp = client.post("/feedback", json=body, headers=headers)
        if resp.status_code != 429:
            break
        time.sleep(float(resp.headers.get("retry-after", "1")))
    return resp.status_code


def run_user(
    client: httpx.Client,
    session: UserSession,
    model: ClickModel,
    settings: Settings,
    stats: SessionStats,
    *,
    k: int = 10,
    mode: str | None = None,
) -> None:
    """One search, then each click after a human pause (the loop drops bot-fast sessions)."""
    headers = client_headers(settings, session.session_id)
    body = {"query": session.query, "k": k, "session_id": session.session_id}
    if mode:
        body["mode"] = mode
    answer = search(client, body, headers, stats)
    stats.count("searches")
    rng = session.rng()
    shown = [r["doc_id"] for r in answer["results"]]
    for doc_id in model.clicks(shown, session.grades, rng):
        time.sleep(rng.uniform(*session.dwell_s))
        status = feedback(client, answer["search_id"], doc_id, headers, patient=True)
        if status != 200:
            raise ClickRefused(f"click on {doc_id} answered {status}")
        stats.clicked(session.grades.get(doc_id, 0) > 0)
    stats.count("sessions")


def _bot_click(client, search_id, doc_id, headers, stats: SessionStats) -> None:
    status = feedback(client, search_id, doc_id, headers, patient=False)
    if status == 200:
        stats.count("bot_clicks_accepted")
    elif status in (404, 429):
        stats.count("bot_clicks_refused")
    else:
        raise ClickRefused(f"bot click on {doc_id} answered {status}")


def run_bot(
    client: httpx.Client, bot: BotSession, settings: Settings, stats: SessionStats, k: int = 10
) -> None:
    """As fast as the API answers: a hammer searches and clicks its first answer's last result
    ``BOT_ACTIONS`` times; a phantom searches once and clicks ids it was never shown."""
    headers = client_headers(settings, bot.session_id)
    body = {"query": bot.query, "k": k, "session_id": bot.session_id}
    stats.count("bots")
    target = None
    for _ in range(BOT_ACTIONS if bot.kind == "hammer" else 1):
        answer = search(client, body, headers, stats)
        stats.count("bot_searches")
        shown = [r["doc_id"] for r in answer["results"]]
        target = target or shown[-1]
        for doc_id in (target,) if bot.kind == "hammer" else bot.decoys:
            _bot_click(client, answer["search_id"], doc_id, headers, stats)


# --------------------------------------------------------------------------- measurement
@dataclass
class Measurement:
    """The live stack's traffic-weighted MRR@10 on a day, asked through the HTTP API."""

    mrr10: float
    reciprocal_ranks: dict[str, float]  # qid -> RR@10
    versions: list[str]  # the versions that answered (two if a rollout happened meanwhile)
    modes: list[str]
    failures: list[str]

    def report(self) -> dict:
        return {
            "mrr10": round(self.mrr10, 4),
            "versions": self.versions,
            "mode": self.modes,
            "failures": len(self.failures),
        }


def measure_day(
    settings: Settings, day: TrafficDay, tag: str, concurrency: int = 8, k: int = 10
) -> Measurement:
    """Ask each query of ``day`` once, as a measurement session that clicks nothing (so it
    never becomes training data), in the stack's default mode; weight by the day's counts."""
    stats = SessionStats()
    answers: dict[str, dict] = {}

    def ask(client: httpx.Client, qid: str) -> None:
        body = {"query": day.queries[qid], "k": k, "session_id": f"{MEASURE_SESSION_PREFIX}{tag}"}
        try:
            answers[qid] = search(client, body, {}, stats)
        except (SearchFailed, httpx.HTTPError) as err:
            stats.failed(f"{qid}: {err}")

    with httpx.Client(base_url=settings.api_base_url, timeout=30) as client:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(lambda qid: ask(client, qid), sorted(day.counts)))
    ranking = {qid: [r["doc_id"] for r in a["results"]] for qid, a in answers.items()}
    rr = reciprocal_ranks(ranking, day)
    return Measurement(
        mrr10=weighted_mean(rr, day),
        reciprocal_ranks=rr,
        versions=sorted({a["version"] for a in answers.values()}),
        modes=sorted({a["mode"] for a in answers.values()}),
        failures=stats.failures,
    )
