"""`twotower up/status/down` for real: a private state folder, free ports, the real CLI."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import psycopg
from minio import Minio

from cluster.processes import ProcessRef, free_ports

TWOTOWER = str(Path(sys.executable).parent / "twotower")


def stack_env(state_dir: Path) -> dict[str, str]:
    """Only this test's configuration: no TWOTOWER_* inherited from the session fixtures
    (which point at external servers and would make every service external)."""
    pg, s3, ray, dashboard, metrics, serve, ui, prometheus = free_ports(8)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWOTOWER_", "RAY_"))}
    env.update(
        TWOTOWER_STATE_DIR=str(state_dir),
        TWOTOWER_POSTGRES_PORT=str(pg),
        TWOTOWER_S3_PORT=str(s3),
        TWOTOWER_RAY_PORT=str(ray),
        TWOTOWER_RAY_DASHBOARD_PORT=str(dashboard),
        TWOTOWER_METRICS_PORT=str(metrics),
        TWOTOWER_SERVE_PORT=str(serve),
        TWOTOWER_UI_PORT=str(ui),
        TWOTOWER_PROMETHEUS_PORT=str(prometheus),
        TWOTOWER_RAY_NUM_CPUS="2",
        COLUMNS="200",
    )
    return env


def run(env, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    started = time.monotonic()
    result = subprocess.run(
        [TWOTOWER, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    print(
        f"$ twotower {' '.join(args)}  ({time.monotonic() - started:.1f}s, rc={result.returncode})"
    )
    print(result.stdout[-3000:], result.stderr[-3000:])
    return result


def recorded_processes(state_dir: Path) -> list[ProcessRef]:
    started = json.loads((state_dir / "stack.json").read_text())["started"]
    return [ProcessRef.from_json(p) for svc in started.values() for p in svc["pids"]]


def stack_family(state_dir: Path) -> list[ProcessRef]:
    """Every process the stack runs now: what `up` recorded plus all descendants, found here
    independently of the code under test (Ray's workers and agents rename themselves)."""
    roots = [r.process() for r in recorded_processes(state_dir)]
    roots += [psutil.Process(pid) for pid in processes_naming(state_dir)]
    family = {}
    for root in filter(None, roots):
        for proc in [root, *root.children(recursive=True)]:
            family[proc.pid] = ProcessRef(proc.pid, proc.create_time())
    return list(family.values())


def processes_naming(folder: Path) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if any(str(folder) in part for part in proc.info["cmdline"] or []):
            found.append(proc.info["pid"])
    return found


def test_up_status_down_and_data_survives(tmp_path):
    # Not under pytest's tmp root: pytest resets its mode, which would lock PostgreSQL out.
    state_dir = Path(tempfile.mkdtemp(prefix="tt-stack-"))
    env = stack_env(state_dir)
    dsn = f"postgresql://postgres@127.0.0.1:{env['TWOTOWER_POSTGRES_PORT']}/twotower"
    s3 = Minio(
        f"127.0.0.1:{env['TWOTOWER_S3_PORT']}",
        access_key="twotower",
        secret_key="twotower-local-secret",
        secure=False,
    )
    try:
        first = run(env, "up", "--services-only")
        assert first.returncode == 0, first.stderr
        for address in (dsn, f"http://127.0.0.1:{env['TWOTOWER_S3_PORT']}"):
            assert address in first.stdout
        assert f"http://127.0.0.1:{env['TWOTOWER_RAY_DASHBOARD_PORT']}" in first.stdout
        assert run(env, "status").returncode == 0
        pids = recorded_processes(state_dir)
        assert len(pids) >= 3 and all(p.alive() for p in pids)

        with psycopg.connect(dsn) as conn:
            conn.execute("CREATE TABLE kept (note text)")
            conn.execute("INSERT INTO kept VALUES ('survives down and up')")
        s3.make_bucket("kept")
        s3.put_object("kept", "note.txt", io.BytesIO(b"survives"), 8)

        again = run(env, "up", "--services-only")
        assert again.returncode == 0 and again.stdout.count("already running") == 3
        assert recorded_processes(state_dir) == pids

        time.sleep(3)  # let Ray start its idle workers, so down has them to stop too
        family = stack_family(state_dir)
        assert len(family) > len(pids)
        assert run(env, "down").returncode == 0
        assert [p.pid for p in family if p.alive()] == []
        assert processes_naming(state_dir) == []
        assert run(env, "status").returncode == 1

        assert run(env, "up", "--services-only").returncode == 0
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT note FROM kept").fetchone() == ("survives down and up",)
        assert s3.get_object("kept", "note.txt").read() == b"survives"
    finally:
        run(env, "down")
        leftover = processes_naming(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)
    assert leftover == []


def test_serve_haproxy_is_opt_in_and_sets_serves_own_switches():
    from cluster.config import Settings
    from cluster.stack import serve_env

    assert serve_env(Settings()) == {}
    assert serve_env(Settings(serve_haproxy=True)) == {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    }
