"""Simulated users, for measuring the loop end to end (``twotower simulate``).

Users ask the *simulated* half of the dev queries through the real HTTP API and click by a
position-based click model: a result at rank r is examined with probability (1/r)**eta and,
once examined, clicked with probability ``p_relevant`` if the dev qrels judge it relevant,
else ``p_noise``. The other dev half and DL19 are never asked here and are what the report
measures (the learning loop also refuses to train on them, see ``splits.untrainable_queries``).
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields

import httpx
import psycopg

from cluster.config import Settings
from cluster.logstore import LogReader
from learning.splits import dev_split
from training.datasets import load_qrels


@dataclass(frozen=True)
class ClickModel:
    eta: float = 1.0  # examination P(rank r) = (1/r)**eta
    p_relevant: float = 0.9  # P(click | examined, relevant)
    p_noise: float = 0.05  # P(click | examined, not relevant)

    def clicks(self, shown: list[str], relevant: set[str], rng: random.Random) -> list[str]:
        clicked = []
        for rank, doc_id in enumerate(shown, 1):
            if rng.random() < (1.0 / rank) ** self.eta:
                if rng.random() < (self.p_relevant if doc_id in relevant else self.p_noise):
                    clicked.append(doc_id)
        return clicked


@dataclass
class SessionStats:
    sessions: int = 0
    searches: int = 0
    clicks: int = 0
    relevant_clicks: int = 0
    failures: list[str] = field(default_factory=list)
    last_click_at: float | None = None  # wall clock (time.time())
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "lock"}

    def clicked(self, relevant: bool) -> None:
        with self.lock:
            self.clicks += 1
            self.relevant_clicks += relevant
            self.last_click_at = time.time()

    def finished(self, failure: str | None = None) -> None:
        with self.lock:
            if failure is None:
                self.sessions += 1
                self.searches += 1
            else:
                self.failures.append(failure)


@dataclass(frozen=True)
class Session:
    """One simulated user: a search, then clicks at human speed."""

    session_id: str
    query: str
    relevant: set[str]
    rng: random.Random
    dwell_s: tuple[float, float] = (0.4, 1.0)

    def run(self, client: httpx.Client, model: ClickModel, k: int, stats: SessionStats) -> None:
        body = {"query": self.query, "k": k, "mode": "dense", "session_id": self.session_id}
        resp = client.post("/search", json=body)
        resp.raise_for_status()
        answer = resp.json()
        shown = [r["doc_id"] for r in answer["results"]]
        for doc_id in model.clicks(shown, self.relevant, self.rng):
            time.sleep(self.rng.uniform(*self.dwell_s))
            click = {"search_id": answer["search_id"], "doc_id": doc_id, "kind": "click"}
            client.post("/feedback", json=click).raise_for_status()
            stats.clicked(doc_id in self.relevant)


def plan_sessions(sessions: int, seed: int, dwell_s: tuple[float, float]) -> list[Session]:
    """``sessions`` users asking the simulated dev half, drawn uniformly (seeded)."""
    if sessions < 1:
        raise ValueError("sessions must be >= 1")
    queries = dev_split().simulated
    qrels = load_qrels("dev")
    qids = sorted(q for q in queries if q in qrels)
    rng = random.Random(seed)
    plan = []
    for i in range(sessions):
        qid, session_seed = rng.choice(qids), rng.random()
        relevant = {d for d, rel in qrels[qid].items() if rel > 0}
        plan.append(
            Session(f"sim-{seed}-{i}", queries[qid], relevant, random.Random(session_seed), dwell_s)
        )
    return plan


def run_sessions(
    settings: Settings,
    sessions: int,
    seed: int,
    *,
    model: ClickModel = ClickModel(),
    concurrency: int = 8,
    dwell_s: tuple[float, float] = (0.4, 1.0),
    k: int = 10,
) -> SessionStats:
    """``sessions`` users, each: one search, a pause, then clicks with pauses between them.

    The pauses keep each session at human speed (the loop drops bot-fast sessions); sessions
    run ``concurrency`` at a time so K sessions still take K * ~1.5 s / concurrency."""
    plan = plan_sessions(sessions, seed, dwell_s)
    stats = SessionStats()
    started = time.monotonic()
    watermark = _feedback_watermark(settings)

    def one(session: Session) -> None:
        try:
            with httpx.Client(base_url=settings.api_base_url, timeout=30) as client:
                session.run(client, model, k, stats)
            stats.finished()
        except httpx.HTTPError as exc:
            stats.finished(f"session {session.session_id}: {exc}")

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, plan))
    if watermark is not None and stats.clicks:
        wait_until_logged(settings, watermark, {s.session_id for s in plan}, stats.clicks)
    stats.seconds = round(time.monotonic() - started, 2)
    return stats


def _feedback_watermark(settings: Settings) -> int | None:
    try:
        with LogReader(settings) as logs:
            return logs.latest_feedback_id()
    except psycopg.Error:  # PostgreSQL down: the sessions still run, nothing waits for it
        return None


def wait_until_logged(
    settings: Settings, watermark: int, sessions: set[str], clicks: int, timeout_s: float = 30
) -> bool:
    """Wait until the log store holds ``clicks`` feedback events of ``sessions`` after
    ``watermark``. The API acknowledges a click before the ingress's writer stores it (it
    gathers records for up to 50 ms), so a learning-loop run started right after the sessions
    would otherwise miss the last clicks until its next run."""
    deadline = time.monotonic() + timeout_s
    with LogReader(settings) as logs:
        while True:
            rows = logs.feedback_since(watermark)
            if sum(r["session_id"] in sessions for r in rows) >= clicks:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)


def wait_until_serving(settings: Settings, version: str, timeout_s: float = 600) -> float:
    """Block until a real search is answered by ``version``; the wall-clock time it happened."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=settings.api_base_url, timeout=30) as client:
        while time.monotonic() < deadline:
            try:
                resp = client.post("/search", json={"query": "what is a version", "k": 1})
                if resp.status_code == 200 and resp.json().get("version") == version:
                    return time.time()
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    raise TimeoutError(f"serving did not answer with {version} within {timeout_s}s")


def live_version(settings: Settings) -> str:
    with httpx.Client(base_url=settings.api_base_url, timeout=30) as client:
        resp = client.post("/search", json={"query": "what is a version", "k": 1})
        resp.raise_for_status()
        return resp.json()["version"]


@dataclass
class Trial:
    seed: int
    base: str
    new: str | None
    run: dict
    sessions: dict
    click_to_live_s: float | None
    changes: dict  # set -> {"before", "after", "delta", "ci95"}


def measure_change(base_dir, new_dir) -> dict:
    """Held-out dev half (MRR@10) and DL19 (nDCG@10), plus the simulated half for contrast."""
    from learning.evaluation import evaluate_per_query
    from training.evaluation.metrics import mean, paired_bootstrap

    before = evaluate_per_query(base_dir)
    after = evaluate_per_query(new_dir) if new_dir != base_dir else before
    out = {}
    for name in ("dev_heldout", "dl19", "dev_simulated"):
        delta, low, high = paired_bootstrap(before[name], after[name])
        out[name] = {
            "before": round(mean(before[name]), 4),
            "after": round(mean(after[name]), 4),
            "delta": round(delta, 4),
            "ci95": [round(low, 4), round(high, 4)],
        }
    return out


def trial(settings: Settings, sessions: int, seed: int, *, concurrency: int = 8) -> Trial:
    """K simulated sessions -> one learning-loop run -> metric change and click-to-live time."""
    from cluster.artifacts import ArtifactStore
    from learning.job import run_once

    base = live_version(settings)
    stats = run_sessions(settings, sessions, seed, concurrency=concurrency)
    if stats.clicks == 0:
        raise RuntimeError(f"the simulated sessions produced no clicks ({stats.failures[:3]})")
    result = run_once(settings, force=True)
    new = result.candidate if result.status == "published" else None
    click_to_live = None
    if new is not None:
        click_to_live = round(wait_until_serving(settings, new) - stats.last_click_at, 1)
    store = ArtifactStore.from_settings(settings)
    base_dir = store.download(base)
    changes = measure_change(base_dir, store.download(new) if new else base_dir)
    return Trial(seed, base, new, result.to_dict(), stats.to_dict(), click_to_live, changes)


def restore(settings: Settings, version: str) -> None:
    """Put ``version`` back live (between repeated trials, so each starts from the same base)."""
    from cluster.artifacts import ArtifactStore
    from deployments.rollout import rollout

    ArtifactStore.from_settings(settings).set_latest(version)
    rollout(settings, version)
    wait_until_serving(settings, version)


def repeated_trials(
    settings: Settings, sessions: int, seed: int, repeats: int, *, concurrency: int = 8
) -> list[Trial]:
    """``repeats`` trials with seeds seed, seed+1, ...; each starts from the same live version
    (put back between trials), so their spread is the noise of the whole loop."""
    base = live_version(settings)
    trials = []
    for r in range(repeats):
        if r:
            restore(settings, base)
        trials.append(trial(settings, sessions, seed + r, concurrency=concurrency))
    return trials


def summary(trials: list[Trial]) -> str:
    """Mean change over trials per set, the per-trial bootstrap intervals and click-to-live."""
    lines = []
    for name, metric in (
        ("dev_heldout", "MRR@10"),
        ("dl19", "nDCG@10"),
        ("dev_simulated", "MRR@10"),
    ):
        deltas = [t.changes[name]["delta"] for t in trials]
        cis = ", ".join(
            f"[{a:+.4f}, {b:+.4f}]" for a, b in (t.changes[name]["ci95"] for t in trials)
        )
        lines.append(
            f"{name} {metric}: before {trials[0].changes[name]['before']:.4f}, "
            f"change per seed {', '.join(f'{d:+.4f}' for d in deltas)} "
            f"(mean {sum(deltas) / len(deltas):+.4f}; 95% CIs {cis})"
        )
    times = [t.click_to_live_s for t in trials if t.click_to_live_s is not None]
    published = sum(t.new is not None for t in trials)
    lines.append(f"published {published}/{len(trials)}; click-to-live seconds: {times}")
    return "\n".join(lines)
