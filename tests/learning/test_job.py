"""`run_once` end to end on real services: PostgreSQL logs, S3 versions, a local Ray running
Ray Train, the tiny version as the live model.

Feedback here is written straight into the log store (real rows, real rankings of the live
version, clicks from the simulator's click model); the HTTP path is covered by the serving
test in test_reinforce_serving.py.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import torch

from cluster.artifacts import ArtifactStore
from cluster.logstore import FeedbackRecord, LogReader, LogWriter, ResultItem, SearchRecord
from learning.job import run_once
from learning.splits import dev_split
from training.datasets import load_qrels
from training.evaluation.runs import dense_ranking
from training.model import load_model, save_model
from twotower.simulate import ClickModel

# Tiny versions are near-random, so relevant passages are rarely shown: noisy clicks give the
# job enough triplets to exercise every step.
CLICKS = ClickModel(eta=1.0, p_relevant=0.9, p_noise=0.3)


def log_sessions(settings, version_dir: Path, sessions: int, seed: int) -> int:
    """Write `sessions` simulated searches (the live version's real top 10) and their clicks,
    at human speed (2 s apart). Returns the number of feedback events."""
    queries = dev_split().simulated
    qrels = load_qrels("dev")
    rng = random.Random(seed)
    chosen = {f"s{i}": queries[rng.choice(sorted(queries))] for i in range(sessions)}
    qid_of = {q: qid for qid, q in queries.items()}
    top = dense_ranking(version_dir, chosen, k=10)
    t0 = datetime.now(UTC) - timedelta(hours=1)
    events = 0
    with LogWriter(settings) as logs:
        for i, (sid, query) in enumerate(chosen.items()):
            at = t0 + timedelta(seconds=60 * i)
            search = SearchRecord(
                query=query,
                session_id=f"test-{seed}-{sid}",
                created_at=at,
                results=[
                    ResultItem(doc_id=d, rank=r, score=1.0) for r, d in enumerate(top[sid], 1)
                ],
            )
            logs.log_search(search)
            relevant = set(qrels.get(qid_of[query], {}))
            for j, doc_id in enumerate(CLICKS.clicks(top[sid], relevant, rng)):
                logs.log_feedback(
                    FeedbackRecord(
                        search_id=search.id,
                        doc_id=doc_id,
                        kind="click",
                        created_at=at + timedelta(seconds=2 * (j + 1)),
                    )
                )
                events += 1
        assert logs.flush(timeout=30)
    return events


@pytest.fixture
def loop(tiny_version, ray_local):
    """Each test starts with the tiny version live and every earlier event consumed, and
    leaves it live again for the tests that follow."""
    settings, version, _ = tiny_version
    settings = settings.model_copy(update={"reinforce_workers": 2, "reinforce_epochs": 1})
    store = ArtifactStore.from_settings(settings)
    directory = store.download(version)  # our own copy: the shared fixture folder may be rebuilt
    store.set_latest(version)
    with LogReader(settings) as logs:
        logs.mark_stale_runs("left by an earlier test")
        logs.set_watermark(logs.latest_feedback_id())
    yield settings, store, version, directory
    store.set_latest(version)


def watermark(settings) -> int:
    with LogReader(settings) as logs:
        return logs.get_watermark()


def no_serving(settings, version):
    """These tests run without a Serve app, so there is nothing to switch: LATEST moving is
    the publication. The real rollout is exercised in test_reinforce_serving.py."""


def worse_candidate(settings, live_dir, data, out):
    """A deliberately worse model: the live version with a randomised query tower (so its
    queries land anywhere in the unchanged passage index). Real weights, real index."""
    import shutil

    shutil.copytree(live_dir, out)
    model, tokenizer = load_model(out)
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.query_tower.parameters():
            param.normal_(0, 1)
    save_model(out, model, tokenizer, {"deliberately": "worse"})
    (out / "manifest.json").unlink(missing_ok=True)
    return out


@pytest.mark.timeout(900)
def test_feedback_becomes_a_published_version_and_events_are_used_once(loop):
    settings, store, base, base_dir = loop
    # The tiny model is near-random, so whether the gate passes is itself noise: open the gate
    # here (the gate rule has its own tests and the next test shows it rejecting).
    settings = settings.model_copy(update={"gate_tolerance": 1.0})
    before = watermark(settings)
    events = log_sessions(settings, base_dir, sessions=40, seed=1)
    assert events >= 10

    result = run_once(settings, force=True, roll_out=no_serving)
    assert result.status == "published", result.reason
    assert result.watermark_from == before and result.watermark_to > before
    assert result.events_used == events
    assert store.latest() == result.candidate
    manifest = store.manifest(result.candidate)
    assert manifest.parent == base
    provenance = manifest.extra["reinforce"]
    assert provenance["watermark_to"] == result.watermark_to
    assert provenance["events_used"] == events and provenance["triplets"] > 0
    # The sessions asked dev queries: the gate's dev left the ones the run trained on out.
    assert 0 < provenance["dev_queries_trained"] <= provenance["triplets"]
    assert set(manifest.metrics) >= {"dev", "dl19", "dev_heldout", "dev_untrained"}
    assert any(f.startswith("index/shard-") for f in manifest.files)
    assert watermark(settings) == result.watermark_to
    with LogReader(settings) as logs:
        row = logs.get_run(result.run_id)
    assert row["status"] == "published" and row["candidate_version"] == result.candidate
    assert row["finished_at"] is not None and row["metrics"]["candidate"]["dev"]

    # The same events are never used twice: nothing new -> skipped, the version stays.
    again = run_once(settings, force=True)
    assert again.status == "skipped" and "no feedback after watermark" in again.reason
    # New events only: the next run starts where the last one stopped.
    new_events = log_sessions(settings, base_dir, sessions=15, seed=2)
    following = run_once(settings, force=True, build_candidate=worse_candidate)
    assert following.watermark_from == result.watermark_to
    assert following.events_used == new_events


@pytest.mark.timeout(900)
def test_a_worse_candidate_is_rejected_and_the_live_version_stays(loop):
    settings, store, base, base_dir = loop
    settings = settings.model_copy(update={"gate_tolerance": 0.0})
    before_versions = set(store.list_versions())
    log_sessions(settings, base_dir, sessions=20, seed=3)

    result = run_once(settings, force=True, build_candidate=worse_candidate)
    assert result.status == "rejected", result.reason
    assert "worse beyond tolerance" in result.reason
    assert store.latest() == base
    # Kept as a rejected version, with its metrics and the gate's verdict.
    assert set(store.list_versions()) == before_versions | {result.candidate}
    provenance = store.manifest(result.candidate).extra["reinforce"]
    assert provenance["gate"]["passed"] is False
    assert provenance["metrics"]["deltas"]["dev_untrained/MRR@10"] < 0
    assert watermark(settings) == result.watermark_to  # its events were consumed


@pytest.mark.timeout(900)
def test_a_killed_run_publishes_nothing_and_the_next_run_recovers(loop, tmp_path):
    settings, store, base, base_dir = loop
    settings = settings.model_copy(update={"gate_tolerance": 1.0})
    before_versions, before = set(store.list_versions()), watermark(settings)
    events = log_sessions(settings, base_dir, sessions=30, seed=4)

    env = {**os.environ, "TWOTOWER_REINFORCE_WORKERS": "2", "TWOTOWER_GATE_TOLERANCE": "1.0"}
    # A SIGKILLed run cannot remove its temporary folder; on the stack it lies in the Ray
    # head's scratch folder (removed on stop), here in the test's own.
    env["TMPDIR"] = str(tmp_path)
    job = subprocess.Popen(
        [sys.executable, "-m", "learning", "--force"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        run = _wait_for_running_run(settings, timeout=300)
        time.sleep(3)  # inside the fine-tune (Ray Train is starting or training)
        assert job.poll() is None, "the run finished before it could be killed"
    finally:
        os.kill(job.pid, signal.SIGKILL)
        job.wait(timeout=30)

    assert store.latest() == base
    assert set(store.list_versions()) == before_versions
    assert watermark(settings) == before
    with LogReader(settings) as logs:
        assert logs.get_run(run["id"])["status"] == "running"  # nobody closed it

    result = run_once(settings, force=True, roll_out=no_serving)
    assert result.status == "published", result.reason
    assert result.watermark_from == before and result.events_used == events
    with LogReader(settings) as logs:
        assert logs.get_run(run["id"])["status"] == "crashed"


def _wait_for_running_run(settings, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    with LogReader(settings) as logs:
        while time.monotonic() < deadline:
            runs = [r for r in logs.list_runs(limit=5) if r["status"] == "running"]
            if runs:
                return runs[0]
            time.sleep(0.2)
    raise AssertionError("the job never started a run")
