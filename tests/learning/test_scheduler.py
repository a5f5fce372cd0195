"""The scheduler: a detached, named Ray actor running each run in a subprocess; one actor per
cluster, and runs serialised by the PostgreSQL advisory lock even across schedulers."""

from __future__ import annotations

import time

import pytest

from cluster.config import settings_env
from learning.job import run_lock
from learning.scheduler import scheduler_handle, start_scheduler, stop_scheduler


def wait_for_tick(handle, ticks: int, timeout: float = 120) -> dict:
    import ray

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = ray.get(handle.status.remote())
        if status["ticks"] >= ticks:
            return status
        time.sleep(0.5)
    raise AssertionError(f"no tick #{ticks} within {timeout}s: {status}")


def test_settings_survive_the_trip_to_a_child_process(settings, monkeypatch):
    from cluster.config import Settings

    env = settings_env(settings)
    assert env["TWOTOWER_POSTGRES_DSN"] == settings.dsn
    for name, value in env.items():  # a child process reads them from its environment
        monkeypatch.setenv(name, value)
    rebuilt = Settings(_env_file=None)
    assert rebuilt.model_dump() == settings.model_dump()


@pytest.mark.timeout(300)
def test_one_scheduler_and_the_lock_keeps_runs_apart(ray_local):
    import ray

    settings = ray_local.model_copy(update={"reinforce_interval_s": 1})
    try:
        with run_lock(settings) as held:  # another scheduler's run is "in progress"
            assert held
            handle = start_scheduler(settings)
            again = start_scheduler(settings)  # idempotent: the same named actor
            assert again._actor_id == handle._actor_id
            status = wait_for_tick(handle, 1)
            assert status["last"]["status"] == "skipped"
            assert status["last"]["reason"] == "another learning-loop run holds the lock"
        ticks = status["ticks"]
        # Lock released: the next tick gets past the lock and decides on its own.
        status = wait_for_tick(handle, ticks + 2)
        assert status["last"]["reason"] != "another learning-loop run holds the lock"
        assert status["running"] is True
    finally:
        stopped = stop_scheduler(settings)
    assert stopped is True
    deadline = time.monotonic() + 30
    while scheduler_handle(settings) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert scheduler_handle(settings) is None
    assert ray.is_initialized()
