"""Simulated traffic, for measuring the loop end to end (``twotower simulate``).

Users ask a query pool (default: the *simulated* half of the dev queries with the dev qrels;
or any TREC topics and qrels) through the real HTTP API, with Zipf popularity over simulated
days, and click by a position-based click model (``twotower.traffic_plan``); a few bots act
fast. The report is the traffic-weighted MRR@10 of the live stack on the held-out next day,
before and after the sessions. The other dev half and DL19 are never asked here and are what
``--repeats`` trials also measure (the learning loop refuses to train on them, see
``learning.splits.untrainable_queries``).
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import psycopg

from cluster.artifacts import ArtifactStore
from cluster.config import Settings
from cluster.logstore import LogReader
from deployments.rollout import rollout
from learning.evaluation import evaluate_per_query
from learning.job import run_once
from learning.traffic import (
    QueryPool,
    TrafficDay,
    default_pool,
    load_day,
    per_search,
    save_day,
)
from training.evaluation.metrics import mean, paired_bootstrap
from twotower.simulated_users import (
    ClickRefused,
    Measurement,
    SearchFailed,
    SessionStats,
    measure_day,
    run_bot,
    run_user,
)
from twotower.traffic_plan import (
    BotSession,
    ClickModel,
    TrafficPlan,
    UserSession,
    day_sessions,
    held_out_day,
    plan_traffic,
)

__all__ = ["ClickModel", "Traffic", "run_sessions", "simulate", "wait_until_serving"]


@dataclass(frozen=True)
class Traffic:
    """How much traffic, how it is spread, and how fast it runs."""

    sessions: int = 200  # people per simulated day
    days: int = 1
    zipf: float = 1.0  # P(query of popularity rank r) proportional to 1 / r**zipf
    seed: int = 1
    bots: int = 0  # bot sessions over all days
    concurrency: int = 8
    dwell_s: tuple[float, float] = (0.4, 1.0)  # pause before each click
    k: int = 10
    mode: str | None = None  # None: the stack's default mode

    def plan(self, pool: QueryPool) -> TrafficPlan:
        return plan_traffic(list(pool.queries), self.sessions, self.days, self.zipf, self.seed)

    def describe(self) -> dict:
        return {
            "sessions_per_day": self.sessions,
            "days": self.days,
            "zipf": self.zipf,
            "seed": self.seed,
            "bots": self.bots,
            "mode": self.mode or "the stack's default",
        }


def _run_one(settings, session, model: ClickModel, traffic: Traffic, stats) -> None:
    try:
        with httpx.Client(base_url=settings.api_base_url, timeout=30) as client:
            if isinstance(session, BotSession):
                run_bot(client, session, settings, stats, traffic.k)
            else:
                run_user(client, session, model, settings, stats, k=traffic.k, mode=traffic.mode)
    except (httpx.HTTPError, SearchFailed, ClickRefused) as exc:
        stats.failed(f"session {session.session_id}: {exc}")


def run_traffic(
    settings: Settings,
    pool: QueryPool,
    traffic: Traffic,
    model: ClickModel | None = None,
    plan: TrafficPlan | None = None,
) -> SessionStats:
    """Every simulated day's sessions, ``concurrency`` at a time, one day after the other;
    then wait until the log store holds every click, so a loop run started next sees them."""
    plan = plan or traffic.plan(pool)
    model = model or ClickModel.from_settings(settings, pool.max_grade)
    stats, started = SessionStats(), time.monotonic()
    watermark = _feedback_watermark(settings)
    people: set[str] = set()
    for sessions in day_sessions(plan, pool, traffic.bots, traffic.dwell_s):
        people |= {s.session_id for s in sessions if isinstance(s, UserSession)}
        with ThreadPoolExecutor(max_workers=traffic.concurrency) as workers:
            list(workers.map(lambda s: _run_one(settings, s, model, traffic, stats), sessions))
    if watermark is not None and stats.clicks:
        wait_until_logged(settings, watermark, people, stats.clicks)
    stats.seconds = round(time.monotonic() - started, 2)
    return stats


def run_sessions(
    settings: Settings,
    sessions: int,
    seed: int,
    *,
    model: ClickModel | None = None,
    concurrency: int = 8,
    dwell_s: tuple[float, float] = (0.4, 1.0),
    k: int = 10,
) -> SessionStats:
    """``sessions`` people on the default pool in one day, no bots: the loop's own tests."""
    traffic = Traffic(sessions, seed=seed, concurrency=concurrency, dwell_s=dwell_s, k=k)
    return run_traffic(settings, default_pool(), traffic, model)


def change(before: Measurement, after: Measurement, day: TrafficDay) -> dict:
    """after − before, with a paired bootstrap 95 % interval over the day's searches."""
    delta, low, high = paired_bootstrap(
        per_search(before.reciprocal_ranks, day), per_search(after.reciprocal_ranks, day)
    )
    return {
        "before": round(before.mrr10, 4),
        "after": round(after.mrr10, 4),
        "delta": round(delta, 4),
        "ci95": [round(low, 4), round(high, 4)],
    }


def simulate(
    settings: Settings, pool: QueryPool, traffic: Traffic, model: ClickModel | None = None
) -> dict:
    """Store the held-out next day, measure the live stack on it, run the sessions, measure
    again: the report ``twotower simulate`` prints."""
    plan = traffic.plan(pool)
    day = held_out_day(plan, pool)
    key = save_day(ArtifactStore.from_settings(settings), day)
    before = measure_day(settings, day, f"{traffic.seed}-before", traffic.concurrency)
    stats = run_traffic(settings, pool, traffic, model, plan)
    after = measure_day(settings, day, f"{traffic.seed}-after", traffic.concurrency)
    return {
        "pool": pool.describe(),
        "traffic": traffic.describe(),
        "held_out_day": {"key": key, "queries": len(day.counts), "searches": day.searches},
        "traffic_weighted_mrr10": {
            "before": before.report(),
            "after": after.report(),
            "change": change(before, after, day),
        },
        "sessions": stats.to_dict(),
    }


def measure_stored(settings: Settings, concurrency: int = 8) -> dict:
    """The live stack's traffic-weighted MRR@10 on the held-out day the last simulation
    stored: after `twotower reinforce --now`, what the new version and the memory give."""
    day = load_day(ArtifactStore.from_settings(settings))
    if day is None:
        raise LookupError("no held-out day is stored yet: run `twotower simulate` first")
    measured = measure_day(settings, day, "stored", concurrency)
    return {"held_out_day": day.meta, "traffic_weighted_mrr10": measured.report()}


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


# --------------------------------------------------------------------------- trials
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


def trial(settings: Settings, pool: QueryPool, traffic: Traffic) -> Trial:
    """Sessions -> one learning-loop run -> metric changes and click-to-live time. The
    traffic-weighted MRR@10 is the live stack's, through the API, before the sessions and
    once the run's outcome serves."""
    base = live_version(settings)
    plan = traffic.plan(pool)
    day = held_out_day(plan, pool)
    store = ArtifactStore.from_settings(settings)
    save_day(store, day)
    before = measure_day(settings, day, f"{traffic.seed}-before", traffic.concurrency)
    stats = run_traffic(settings, pool, traffic, plan=plan)
    if stats.clicks == 0:
        raise RuntimeError(f"the simulated sessions produced no clicks ({stats.failures[:3]})")
    result = run_once(settings, force=True)
    new = result.candidate if result.status == "published" else None
    click_to_live = None
    if new is not None:
        click_to_live = round(wait_until_serving(settings, new) - stats.last_click_at, 1)
    after = measure_day(settings, day, f"{traffic.seed}-after", traffic.concurrency)
    base_dir = store.download(base)
    changes = measure_change(base_dir, store.download(new) if new else base_dir)
    changes["traffic"] = change(before, after, day)
    return Trial(traffic.seed, base, new, result.to_dict(), stats.to_dict(), click_to_live, changes)


def restore(settings: Settings, version: str) -> None:
    """Put ``version`` back live (between repeated trials, so each starts from the same base)."""
    ArtifactStore.from_settings(settings).set_latest(version)
    rollout(settings, version)
    wait_until_serving(settings, version)


def repeated_trials(
    settings: Settings, pool: QueryPool, traffic: Traffic, repeats: int
) -> list[Trial]:
    """``repeats`` trials with seeds seed, seed+1, ...; each starts from the same live version
    (put back between trials), so their spread is the noise of the whole loop."""
    base = live_version(settings)
    trials = []
    for r in range(repeats):
        if r:
            restore(settings, base)
        trials.append(trial(settings, pool, dataclasses.replace(traffic, seed=traffic.seed + r)))
    return trials


SUMMARY_SETS = (
    ("traffic", "traffic-weighted MRR@10 (held-out next day, live stack)"),
    ("dev_heldout", "MRR@10"),
    ("dl19", "nDCG@10"),
    ("dev_simulated", "MRR@10"),
)


def summary(trials: list[Trial]) -> str:
    """Mean change over trials per set, the per-trial bootstrap intervals and click-to-live."""
    lines = []
    for name, metric in SUMMARY_SETS:
        deltas = [t.changes[name]["delta"] for t in trials]
        cis = ", ".join(
            f"[{a:+.4f}, {b:+.4f}]" for a, b in (t.changes[name]["ci95"] for t in trials)
        )
        befores = ", ".join(f"{t.changes[name]['before']:.4f}" for t in trials)
        lines.append(
            f"{name} {metric}: before {befores}, "
            f"change per seed {', '.join(f'{d:+.4f}' for d in deltas)} "
            f"(mean {sum(deltas) / len(deltas):+.4f}; 95% CIs {cis})"
        )
    times = [t.click_to_live_s for t in trials if t.click_to_live_s is not None]
    published = sum(t.new is not None for t in trials)
    lines.append(f"published {published}/{len(trials)}; click-to-live seconds: {times}")
    return "\n".join(lines)
