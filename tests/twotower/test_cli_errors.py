"""The CLI's expected failures: one line and a hint, no traceback; `--debug` shows it. The real
`twotower` command, against servers that are not there (a closed loopback port) or against
the session's real S3."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.processes import free_port
from twotower.cli import explain

TWOTOWER = str(Path(sys.executable).parent / "twotower")


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([TWOTOWER, *args], env=env, capture_output=True, text=True, timeout=120)
    print(f"$ twotower {' '.join(args)} (rc={result.returncode})\n{result.stderr[-600:]}")
    return result


@pytest.fixture
def nothing_running(tmp_path) -> dict[str, str]:
    """Settings that name an S3 and a PostgreSQL on closed ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWOTOWER_", "RAY_"))}
    closed = free_port()
    env.update(
        TWOTOWER_STATE_DIR=str(tmp_path),
        TWOTOWER_S3_ENDPOINT=f"127.0.0.1:{closed}",
        TWOTOWER_POSTGRES_DSN=f"postgresql://twotower@127.0.0.1:{closed}/twotower",
        COLUMNS="200",
    )
    return env


def assert_one_line_and_a_hint(result: subprocess.CompletedProcess, *phrases: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 2 and lines[1].startswith("hint: "), lines
    assert "Traceback" not in result.stdout + result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


def test_s3_unreachable_is_one_line_and_debug_shows_the_traceback(nothing_running):
    where = nothing_running["TWOTOWER_S3_ENDPOINT"]
    result = run(nothing_running, "rollout")
    assert_one_line_and_a_hint(result, f"artifact store (S3 at {where}) is unreachable", "refused")
    debug = run(nothing_running, "--debug", "rollout")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_reinforce_now_with_only_s3_down_names_s3(settings):
    closed = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "COLUMNS": "200", "TWOTOWER_S3_ENDPOINT": closed}  # the real PostgreSQL
    result = run(env, "reinforce", "--now")
    assert_one_line_and_a_hint(result, f"artifact store (S3 at {closed}) is unreachable")


def test_postgres_unreachable_is_one_line(nothing_running):
    for args in (["reinforce"], ["reinforce", "--now"]):
        result = run(nothing_running, *args)
        assert_one_line_and_a_hint(result, "log store (PostgreSQL) is unreachable", "refused")


def test_an_unknown_version_is_one_line(settings):
    env = {**os.environ, "COLUMNS": "200"}  # the session's real S3
    result = run(env, "rollout", "no-such-version")
    assert_one_line_and_a_hint(result, "version 'no-such-version' does not exist")


def test_ray_unreachable_is_explained_and_a_bug_is_not():
    """Ray's own error (a real ConnectionError as ray.init raises it): joining a head that is
    not there takes ray.init minutes, too long to run here."""
    what, hint = explain(ConnectionError("Failed to connect to Ray cluster at 127.0.0.1:9"))
    assert what.startswith("Ray (at ") and "is unreachable" in what
    assert "twotower up" in hint
    assert explain(KeyError("results")) is None  # a bug keeps its traceback
