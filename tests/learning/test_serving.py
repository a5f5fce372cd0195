"""The whole loop over HTTP: simulated users search and click through the real API, the job
fine-tunes on Ray Train, the gate passes, the real rollout switches serving, and searches are
answered by the new version."""

from __future__ import annotations

import httpx
import pytest

from cluster.artifacts import ArtifactStore
from cluster.logstore import LogReader
from deployments.rollout import rollout
from learning.job import run_once
from twotower.simulate import ClickModel, run_sessions, wait_until_serving


@pytest.mark.timeout(900)
def test_clicks_through_the_api_become_the_served_version(serving, tiny_version, request):
    _, base, _ = tiny_version
    # The tiny model is near-random, so the gate's verdict on it is noise: open the gate (its
    # rule is tested in test_reinforce_gate.py and rejection in test_reinforce_job.py).
    settings = serving.model_copy(update={"gate_tolerance": 1.0})
    rollout(settings, base)  # earlier tests may have moved LATEST
    with LogReader(settings) as logs:
        logs.set_watermark(logs.latest_feedback_id())

    stats = run_sessions(
        settings,
        sessions=24,
        seed=7,
        model=ClickModel(p_noise=0.3),  # a near-random model shows few relevant passages
        concurrency=6,
        dwell_s=(0.3, 0.6),
    )
    assert stats.failures == [] and stats.clicks >= 5

    result = run_once(settings, force=True)  # the real rollout, no injection
    request.addfinalizer(lambda: rollout(settings, base))  # later tests expect the tiny version
    assert result.status == "published", result.reason
    assert result.events_used == stats.clicks
    assert ArtifactStore.from_settings(settings).latest() == result.candidate
    wait_until_serving(settings, result.candidate, timeout_s=120)
    answer = httpx.post(
        f"{settings.api_base_url}/search", json={"query": "what is a lobster roll", "k": 3}
    ).json()
    assert answer["version"] == result.candidate and len(answer["results"]) == 3
