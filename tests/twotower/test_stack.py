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
from cluster.servers import RayHead

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
        # Ray's temporary files are in its own scratch folder (the dashboard's forkserver
        # keeps a multiprocessing listener there), which down removes.
        scratch = RayHead.temp_dir_for(state_dir) / "scratch"
        assert list(scratch.glob("pymp-*"))
        s3_socket = Path(tempfile.gettempdir()) / f"seaweedfs-s3-{env['TWOTOWER_S3_PORT']}.sock"
        assert s3_socket.exists()
        assert run(env, "down").returncode == 0
        assert not scratch.exists() and not s3_socket.exists()
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


def test_serve_haproxy_switches_and_its_wrapper_keeps_binds_on_the_host(tmp_path):
    """With serve_haproxy, Serve runs our wrapper, which moves the wildcard binds of Serve's
    HAProxy template (stats page, Prometheus endpoint) to the stack's host. The wrapper is run
    for real here, with /bin/echo standing in for HAProxy: no test may open ports on every
    interface, which is what the real binary would do with the unrewritten file."""
    from cluster.config import Settings
    from cluster.haproxy import haproxy_env, write_wrapper

    assert haproxy_env(Settings(serve_haproxy=False), tmp_path / "off") == {}
    env = haproxy_env(
        Settings(haproxy_stats_port=18404, haproxy_metrics_port=19101), tmp_path / "on"
    )
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert (env["RAY_SERVE_HAPROXY_STATS_PORT"], env["RAY_SERVE_HAPROXY_METRICS_PORT"]) == (
        "18404",
        "19101",
    )
    assert os.access(env["RAY_SERVE_HAPROXY_BINARY_PATH"], os.X_OK)

    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "global\n    stats socket /tmp/x/admin.sock mode 666 level admin expose-fd listeners\n"
        "frontend prometheus\n    bind :19101\nfrontend http_frontend\n"
        "    bind 127.0.0.1:8000\nlisten stats\n  bind *:18404\n  stats enable\n"
    )
    wrapper = write_wrapper(tmp_path / "echo", "127.0.0.1", "/bin/echo")
    args = ["-db", "-f", str(config), "-sf", "42"]
    done = subprocess.run([str(wrapper), *args], capture_output=True, text=True, check=True)
    assert done.stdout.split() == args  # the real binary gets Serve's arguments unchanged
    binds = [line.split()[1] for line in config.read_text().splitlines() if "bind" in line]
    assert binds == ["127.0.0.1:19101", "127.0.0.1:8000", "127.0.0.1:18404"]
    assert "mode 600 level admin" in config.read_text()


def test_serve_s_haproxy_files_live_in_the_stack_s_folder_and_go_with_the_head(serving, tmp_path):
    """Serve's HAProxy (running for the session's app) writes its configuration and sockets
    where haproxy_env points it, not into /tmp/haproxy-serve, which nothing ever cleans; a Ray
    head removes the folders it owns when it stops."""
    import ray

    from cluster.haproxy import serve_files_dir
    from cluster.servers import RayHead

    node_files = serve_files_dir(serving.state_dir) / ray.get_runtime_context().get_node_id()
    config = (node_files / "haproxy.cfg").read_text()
    assert f"stats socket {node_files}/admin.sock" in config

    owned = tmp_path / "owned"
    (owned / "node").mkdir(parents=True)
    (owned / "node" / "haproxy.cfg").write_text("global\n")
    RayHead(tmp_path / "no-such-ray", 0, 0, 0, owned_dirs=(owned,)).stop()
    assert not owned.exists()
