"""The learning-loop schedule: a detached, named Ray actor that runs the job periodically.

Why a detached actor (not a periodically submitted Ray job): something has to keep time to
submit periodic jobs, and a detached actor *is* that something, with no job server or
dashboard needed. It is created idempotently (``get_if_exists``), outlives the ``twotower up``
process that started it, is restarted by Ray if it dies (``max_restarts=-1``) and needs no CPU
while it sleeps. Each run executes in a fresh subprocess (``python -m learning``):
the actor stays small, a run that crashes or leaks memory cannot take the schedule down, and
killing a run is killing a process. Overlap is prevented by the job's PostgreSQL advisory
lock, so even two schedulers on two machines cannot run at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import ray

from cluster.config import REPO_ROOT, Settings, settings_env
from cluster.metrics import loop_metrics
from cluster.ray_connection import NAMESPACE, connect

ACTOR_NAME = "reinforce-scheduler"


def run_in_subprocess(
    settings: Settings, *, force: bool = False, timeout_s: float | None = None
) -> dict:
    """Run ``run_once`` in a fresh Python process; its result dict (or a failure dict)."""
    cmd = [sys.executable, "-m", "learning"] + (["--force"] if force else [])
    env = {**os.environ, **settings_env(settings)}
    try:
        done = subprocess.run(
            cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"run exceeded {timeout_s}s and was killed"}
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        return json.loads(lines[-1])
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return {"status": "failed", "reason": f"exit {done.returncode}: " + " | ".join(tail)}


class Scheduler:
    """Every ``reinforce_interval_s``: run the job (it skips itself below min events)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.last: dict | None = None
        self.runs = 0
        self.started_at = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reinforce-loop", daemon=True)
        self._thread.start()  # in __init__, so a restarted actor resumes the schedule

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.reinforce_interval_s):
            self.tick()

    def tick(self) -> dict:
        result = run_in_subprocess(self.settings, timeout_s=self.settings.reinforce_run_timeout_s)
        result["at"] = time.time()
        self.last, self.runs = result, self.runs + 1
        record_metrics(result)
        return result

    def status(self) -> dict:
        return {
            "interval_s": self.settings.reinforce_interval_s,
            "min_events": self.settings.reinforce_min_events,
            "ticks": self.runs,
            "last": self.last,
            "running": self._thread.is_alive() and not self._stop.is_set(),
        }

    def stop(self) -> None:
        self._stop.set()


def record_metrics(result: dict) -> None:
    """Export a run's outcome through Ray's metrics pipeline (cluster/metrics.py). Called in
    the long-lived actor, so the series survive the short-lived run process."""
    outcome = {"no_data": "skipped"}.get(result["status"], result["status"])
    metrics = loop_metrics()
    metrics.runs.inc(1, tags={"outcome": outcome})
    if result.get("seconds"):
        metrics.run_duration_s.observe(result["seconds"], tags={"outcome": outcome})
    if outcome != "failed":
        metrics.last_success_ts.set(time.time())
    if outcome == "published":
        for split, values in result.get("metrics", {}).get("candidate", {}).items():
            for name, value in values.items():
                metrics.live_version_metric.set(
                    value,
                    tags={"version": result["candidate"], "metric": f"{split}.{name.lower()}"},
                )


def _child_settings(settings: Settings) -> Settings:
    """The actor's runs must reach the same Ray cluster the actor lives on."""
    if settings.ray_address:
        return settings
    return settings.model_copy(update={"ray_address": ray.get_runtime_context().gcs_address})


def start_scheduler(settings: Settings):
    """Start (or find) the detached scheduler actor on the connected Ray cluster.

    Called by ``twotower up`` after Ray is running; idempotent. Returns the actor handle."""
    connect(settings, quiet=True)
    actor_cls = ray.remote(Scheduler).options(
        name=ACTOR_NAME,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_concurrency=4,  # status()/stop() answer while a tick is running
        num_cpus=0,
    )
    return actor_cls.remote(_child_settings(settings))


def scheduler_handle(settings: Settings):
    """The running scheduler actor, or None."""
    connect(settings, quiet=True)
    try:
        return ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)
    except ValueError:
        return None


def stop_scheduler(settings: Settings) -> bool:
    """Stop the schedule and remove the actor; False if none was running."""
    handle = scheduler_handle(settings)
    if handle is None:
        return False
    ray.get(handle.stop.remote())
    ray.kill(handle, no_restart=True)
    return True
