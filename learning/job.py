"""One learning-loop run: logs since the watermark -> fine-tuned candidate -> gate -> rollout.

Crash safety comes from the order of the steps, not from cleanup code:
1. a PostgreSQL advisory lock (held by this process's connection; the server drops it when the
   process dies) so two runs never overlap, even from two machines;
2. the candidate is uploaded completely (its manifest last) before anything points at it;
3. LATEST moves only after the candidate passed the gate, then serving is rolled out;
4. the run row is finished and the watermark advanced last, in one transaction.
A crash before 3 leaves LATEST and the watermark untouched, so the next run reads the same
events again. A crash between 3 and 4 is repaired by the next run: the live version's manifest
records the watermark it consumed (``_repair``).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg

from cluster.artifacts import ArtifactStore
from cluster.config import Settings
from cluster.logstore import LogReader
from deployments.rollout import rollout
from learning.evaluation import evaluate_for_gate, untrained_dev
from learning.events import events_from_rows
from learning.finetune import bm25_miner, fine_tune_from_logs, parent_collection
from learning.gate import GateDecision, decide
from learning.splits import untrainable_queries
from learning.traffic import load_day
from learning.traffic_gate import memory_priors, traffic_metrics
from learning.triplets import LogData, TripletConfig, build_log_data
from training.datasets import load_queries

log = logging.getLogger(__name__)

LOCK_KEY = 7_355_608_020_261_127  # pg advisory lock id of the learning loop (any constant)
# What `twotower reinforce --now` prints, live -> candidate: what users will ask next (the
# held-out day, without and with the click memory), then the never-trained dev half and DL19.
REPORTED = (
    ("traffic", "MRR@10"),
    ("traffic_memory", "MRR@10"),
    ("dev_heldout", "MRR@10"),
    ("dl19", "nDCG@10"),
)


@dataclass
class RunResult:
    status: str  # skipped | no_data | published | rejected | failed
    reason: str
    run_id: int | None = None
    parent: str | None = None
    candidate: str | None = None
    watermark_from: int | None = None
    watermark_to: int | None = None
    events_used: int = 0
    triplets: int = 0
    metrics: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """What a person reads: the outcome, then each reported figure, live -> candidate."""
        lines = [f"{self.status}: {self.reason}"]
        live, candidate = self.metrics.get("live", {}), self.metrics.get("candidate", {})
        for split, metric in REPORTED:
            before = live.get(split, {}).get(metric)
            after = candidate.get(split, {}).get(metric)
            if before is not None and after is not None:
                lines.append(
                    f"  {split:<15} {metric:<8} {before:.4f} -> {after:.4f} ({after - before:+.4f})"
                )
        return "\n".join(lines)


# A function that turns (settings, live version dir, log data, output dir) into a complete
# candidate version dir (weights + rebuilt index). Injected so a test can make a deliberately
# worse candidate; production uses ``fine_tune_candidate``.
CandidateBuilder = Callable[[Settings, Path, LogData, Path], Path]


@contextmanager
def run_lock(settings: Settings):
    """Yield True if this process now holds the loop's advisory lock, False if another does."""
    conn = psycopg.connect(settings.dsn, autocommit=True)
    try:
        held = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]
        yield bool(held)
    finally:
        conn.close()  # ends the session, which releases the lock


def run_once(
    settings: Settings,
    *,
    force: bool = False,
    build_candidate: CandidateBuilder | None = None,
    roll_out: Callable[[Settings, str], object] | None = None,
) -> RunResult:
    """One run. ``force`` ignores ``reinforce_min_events`` (``twotower reinforce --now``).
    ``build_candidate`` and ``roll_out`` default to the real fine-tune and
    ``deployments.rollout.rollout``; tests swap them to build a bad model or to run without
    a Serve app."""
    started = time.monotonic()
    with run_lock(settings) as held:
        if not held:
            return RunResult("skipped", "another learning-loop run holds the lock")
        logs = LogReader(settings)  # runs and watermark; never the ingress's disk buffer
        store = ArtifactStore.from_settings(settings)
        try:
            result = _run_locked(settings, logs, store, force, build_candidate, roll_out)
        finally:
            logs.close()
    result.seconds = round(time.monotonic() - started, 2)
    return result


def _run_locked(settings, logs, store, force, build_candidate, roll_out) -> RunResult:
    _repair(logs, store)
    live = store.latest()
    if live is None:
        return RunResult("skipped", "no live version to fine-tune from")
    watermark = logs.get_watermark()
    rows = logs.feedback_since(watermark)
    if not rows:
        return RunResult("skipped", f"no feedback after watermark {watermark}", parent=live)
    if len(rows) < settings.reinforce_min_events and not force:
        return RunResult(
            "skipped",
            f"{len(rows)} new feedback events < reinforce_min_events "
            f"{settings.reinforce_min_events}",
            parent=live,
        )
    new_watermark = max(_row_id(r) for r in rows)
    run_id = logs.start_run(parent_version=live, watermark_from=watermark)
    result = RunResult("failed", "", run_id, live, None, watermark, new_watermark, events_used=0)
    try:
        _train_and_gate(settings, logs, store, rows, result, build_candidate, roll_out)
    except BaseException as exc:  # record why, then let it propagate (KeyboardInterrupt too)
        result.status, result.reason = "failed", f"{type(exc).__name__}: {exc}"
        _finish(logs, result, advance=False)
        raise
    return result


def _train_and_gate(
    settings, logs, store, rows, result: RunResult, build_candidate, roll_out
) -> None:

    live_dir = store.download(result.parent)
    data = build_log_data(
        events_from_rows(rows),
        TripletConfig.from_settings(settings),
        untrainable=untrainable_queries(),
        mine=bm25_miner(parent_collection(live_dir), settings.seed),
    )
    result.events_used, result.triplets = data.events_used, len(data.train)
    if not data.train:
        result.status = "no_data"
        result.reason = (
            f"{data.events_read} events gave no training triplets "
            f"({data.bot_sessions} bot sessions, {data.dropped_untrainable} untrainable searches)"
        )
        _finish(logs, result, advance=True)  # consumed: nothing in them will ever train
        return

    with tempfile.TemporaryDirectory(prefix="reinforce-") as tmp:
        candidate_dir = (build_candidate or fine_tune_candidate)(
            settings, live_dir, data, Path(tmp) / "candidate"
        )
        trained = data.trained_queries()
        dev_trained = len(load_queries("dev")) - len(untrained_dev(trained))
        live_metrics = evaluate_for_gate(live_dir, data.holdout, trained)
        candidate_metrics = evaluate_for_gate(candidate_dir, data.holdout, trained)
        _add_traffic(settings, store, live_dir, candidate_dir, live_metrics, candidate_metrics)
        decision = decide(
            live_metrics, candidate_metrics, settings.gate_tolerance, len(data.holdout)
        )
        _merge_metrics(candidate_dir, candidate_metrics)
        result.metrics = {
            "live": live_metrics,
            "candidate": candidate_metrics,
            "deltas": decision.deltas,
        }
        manifest = store.upload_version(
            candidate_dir,
            parent=result.parent,
            extra={
                "reinforce": _provenance(result, data, decision, dev_trained),
                **_inherited(store, result.parent),
            },
        )
    result.candidate = manifest.version
    if decision.passed:
        _publish(settings, store, result, roll_out)
        result.status, result.reason = "published", decision.reason
    else:
        result.status, result.reason = "rejected", decision.reason
    _finish(logs, result, advance=True)


def _add_traffic(settings, store, live_dir, candidate_dir, live: dict, candidate: dict) -> None:
    """The held-out day's traffic-weighted MRR@10 of both versions, alone and with the click
    memory as it stands (when a simulation stored a day: `twotower simulate`)."""
    day = load_day(store)
    if day is None:
        return
    priors = memory_priors(settings) if settings.click_memory_enabled else None
    live.update(traffic_metrics(live_dir, day, settings, priors))
    candidate.update(traffic_metrics(candidate_dir, day, settings, priors))


def _inherited(store, parent: str | None) -> dict:
    """What a fine-tuned child keeps of its parent's manifest: the corpus it indexes and the
    document-log watermark of that index (the child indexes the parent's passages)."""
    if parent is None:
        return {}
    extra = store.manifest(parent).extra
    return {k: extra[k] for k in ("corpus", "documents_watermark") if k in extra}


def _publish(settings: Settings, store, result: RunResult, roll_out) -> None:
    """Move LATEST, then switch serving; put LATEST back if the switch fails."""
    roll_out = roll_out or rollout
    store.set_latest(result.candidate)
    try:
        roll_out(settings, result.candidate)
    except Exception:
        store.set_latest(result.parent)
        raise


def _provenance(result: RunResult, data: LogData, decision: GateDecision, dev_trained: int) -> dict:
    return {
        "run_id": result.run_id,
        "parent": result.parent,
        "watermark_from": result.watermark_from,
        "watermark_to": result.watermark_to,
        "events_read": data.events_read,
        "events_used": data.events_used,
        "triplets": len(data.train),
        "bot_sessions": data.bot_sessions,
        "logged_holdout_queries": len(data.holdout),
        # dev queries the run trained on (simulated users ask dev queries): not in dev_untrained
        "dev_queries_trained": dev_trained,
        "gate": {"passed": decision.passed, "reason": decision.reason},
        "metrics": result.metrics,
    }


def _finish(logs, result: RunResult, *, advance: bool) -> None:
    logs.finish_run(
        result.run_id,
        status=result.status,
        reason=result.reason,
        candidate_version=result.candidate,
        metrics=result.metrics,
        events_used=result.events_used,
        watermark_to=result.watermark_to if advance else None,
    )


def _repair(logs, store) -> None:
    """Runs left 'running' by a crash are marked crashed (we hold the lock, so none is
    running); if LATEST already points at a version whose events the watermark does not yet
    cover, advance the watermark so those events are not used twice."""
    logs.mark_stale_runs("crashed: the process died mid-run; nothing was published")
    live = store.latest()
    if live is None:
        return
    consumed = (store.manifest(live).extra or {}).get("reinforce", {}).get("watermark_to")
    if consumed is not None and consumed > logs.get_watermark():
        log.warning("watermark behind the live version's data; advancing to %s", consumed)
        logs.set_watermark(consumed)


def _merge_metrics(version_dir: Path, metrics: dict) -> None:
    """The candidate's metrics.json (hence its manifest) carries the gate's evaluation."""
    path = Path(version_dir) / "metrics.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**current, **metrics}, indent=2) + "\n")


def _row_id(row) -> int:
    return int(row["id"] if isinstance(row, dict) else row.id)


def fine_tune_candidate(settings: Settings, live_dir: Path, data: LogData, out: Path) -> Path:
    """The production candidate builder: Ray Train fine-tune from the live version on the
    log triplets mixed with replay of the original training data, index rebuilt."""
    return fine_tune_from_logs(settings, live_dir, data, out)
