"""`twotower bench`'s served part: the closed-loop load generator against the running app."""

from __future__ import annotations

import re
import time

import psycopg

from monitoring.bench import WARMUP_REQUESTS, main, served_level


def _searches(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM searches").fetchone()[0]


def _settled_searches(dsn: str, timeout_s: float = 20) -> int:
    """The count once no search is still on its way: the ingress's log writer gathers records
    for up to 50 ms, so a count taken right after traffic can be short."""
    deadline = time.monotonic() + timeout_s
    last = _searches(dsn)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _searches(dsn)
        if now == last:
            return now
        last = now
    return last


def test_a_level_counts_only_its_measured_requests_after_a_warm_up(serving):
    total = 40
    assert total < WARMUP_REQUESTS  # so the warm-up is `total` requests too
    before = _settled_searches(serving.dsn)

    level = served_level(serving.api_base_url, concurrency=4, total=total, max_s=60)

    assert (level.concurrency, level.requests, level.errors) == (4, total, 0)
    assert level.qps > 0 and 0 < level.p50_ms <= level.p95_ms <= level.p99_ms
    # Every request reached the app and was logged: the warm-up's and the measured ones.
    assert _settled_searches(serving.dsn) == before + 2 * total
    # The machine's idle and steal shares during the measured part are real percentages, and
    # answering took CPU time.
    assert 0 <= level.idle_pct <= 100 and 0 <= level.steal_pct <= 100
    assert level.cpu_ms > 0


def test_the_http_floor_level_gets_healthz_and_searches_nothing(serving):
    before = _settled_searches(serving.dsn)

    floor = served_level(serving.api_base_url, concurrency=4, total=40, max_s=60, route="/healthz")

    assert (floor.concurrency, floor.requests, floor.errors) == (4, 40, 0)
    assert floor.qps > 0 and 0 < floor.p50_ms <= floor.p99_ms
    assert _settled_searches(serving.dsn) == before  # GET /healthz logs no search


def test_the_bench_prints_served_in_process_and_the_floor_side_by_side(serving, capsys):
    main(serving, levels=[2], total=30, max_s=30, scale=False)

    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("│     2 │"))
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert cells[1:3] == ["30", "0"]  # requests, errors
    assert float(cells[3]) > 0 and float(cells[9]) > 0  # served and in-process QPS
    assert float(cells[8]) > 0 and float(cells[12]) > 0  # the machine's CPU per request
    assert cells[-1].endswith("%")  # served ÷ in-process
    assert "HTTP floor at concurrency 2: GET /healthz (no search)" in out
    floor_qps = float(re.search(r"\(no search\) ([0-9.]+) QPS", out).group(1))
    ceiling = int(re.search(r"would be at most about (\d+)%", out).group(1))
    in_process_qps = float(cells[9])
    # the printed QPS are rounded to 0.1, so the recomputed ceiling may differ by rounding
    assert abs(ceiling - 100 * floor_qps / (floor_qps + in_process_qps)) <= 1
