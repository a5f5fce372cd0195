"""The run lock: a PostgreSQL advisory lock, so two runs never overlap (even across machines)
and a run that dies releases it with its connection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from learning.job import LOCK_KEY, run_lock

HOLDER = f"""
import sys, time, psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
conn.execute("SELECT pg_advisory_lock({LOCK_KEY})")
print("held", flush=True)
time.sleep(600)
"""


def test_second_holder_is_refused_until_the_first_lets_go(settings):
    with run_lock(settings) as first:
        assert first is True
        with run_lock(settings) as second:
            assert second is False
    with run_lock(settings) as again:
        assert again is True


def test_a_killed_process_releases_the_lock(settings):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, settings.dsn], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with run_lock(settings) as held:
            assert held is False
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
    deadline = time.monotonic() + 10  # the server notices the dead connection promptly
    while True:
        with run_lock(settings) as held:
            if held or time.monotonic() > deadline:
                break
        time.sleep(0.1)
    assert held is True
