"""The log-call benchmark (cluster/logstore/bench.py) on the real PostgreSQL, small: it runs,
measures both modes, and leaves every record in the database. It prints, never asserts, speed."""

from __future__ import annotations

import psycopg

from cluster.logstore import bench


def test_bench_times_both_modes_and_loses_nothing(settings, tmp_path):
    times = bench.measure(settings, 150, tmp_path)
    print("\n" + bench.table(times))
    assert {mode: len(seconds) for mode, seconds in times.items()} == dict.fromkeys(
        bench.MODES, 150
    )
    with psycopg.connect(settings.dsn) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM searches WHERE session_id LIKE 'log-bench-%%'"
            " AND created_at > now() - interval '10 minutes'"
        ).fetchone()[0]
    assert stored >= 300
    assert not list(tmp_path.glob("*/w-*")), "both writers drained and removed their streams"
