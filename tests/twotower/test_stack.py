"""`twotower up/status/down` for real: a private state folder, free ports, the real CLI."""

from __future__ import annotations

import io
import ipaddress
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import httpx
import psutil
import psycopg
import pytest
from minio import Minio

from cluster.config import Settings
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
            family[proc.pid] = ProcessRef.of(proc)
    return list(family.values())


def processes_naming(folder: Path) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if any(str(folder) in part for part in proc.info["cmdline"] or []):
            found.append(proc.info["pid"])
    return found


def listening(procs: list[ProcessRef]) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every listening TCP socket of these processes."""
    found = []
    for proc in filter(None, (ref.process() for ref in procs)):
        try:
            sockets = proc.net_connections(kind="inet")
            name = proc.name()
        except psutil.Error:  # exited meanwhile
            continue
        found += [(c.laddr.ip, c.laddr.port, name) for c in sockets if c.status == "LISTEN"]
    return sorted(set(found))


def assert_loopback_only(procs: list[ProcessRef]) -> None:
    sockets = listening(procs)
    print("listening:", *(f"{ip}:{port} {name}" for ip, port, name in sockets), sep="\n  ")
    assert sockets, "found no listening socket at all: the check would pass vacuously"
    outside = [s for s in sockets if not loopback(s[0])]
    assert outside == []


def loopback(ip: str) -> bool:
    """127.0.0.0/8 and ::1, also as IPv4-mapped IPv6 (::ffff:127.0.0.1, what Ray shows)."""
    address = ipaddress.ip_address(ip)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def assert_only_passwords_log_in(env: dict, settings: Settings) -> None:
    """The app's own DSN works, as a plain role; no login without a password, the
    superuser's included; `up` printed no password."""
    port = int(env["TWOTOWER_POSTGRES_PORT"])
    with psycopg.connect(settings.dsn) as conn:
        role = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    assert role == (False, False, False)
    for user in ("postgres", "twotower"):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(host="127.0.0.1", port=port, user=user, dbname="postgres",
                            passfile="/no/such/file", connect_timeout=5)  # fmt: skip
    secrets = settings.state_dir / "secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    assert {stat.S_IMODE(f.stat().st_mode) for f in secrets.iterdir()} == {0o600}


def assert_ray_wants_the_token(env: dict, state_dir: Path) -> None:
    """The head's dashboard job API and its GCS refuse a caller without the stack's token."""
    token = RayHead.token_file_for(state_dir).read_text().strip()
    jobs = f"http://127.0.0.1:{env['TWOTOWER_RAY_DASHBOARD_PORT']}/api/jobs/"
    job = {"entrypoint": "echo submitted"}
    refused = httpx.post(jobs, json=job, timeout=30)
    wrong = httpx.post(jobs, json=job, headers={"Authorization": "Bearer " + "0" * 64})
    print(f"job submission: no token {refused.status_code}, wrong token {wrong.status_code}")
    assert (refused.status_code, wrong.status_code) == (401, 403)
    bearer = {"Authorization": f"Bearer {token}"}
    accepted = httpx.post(jobs, json=job, headers=bearer, timeout=30)
    print(f"job submission with the token: {accepted.status_code} {accepted.text}")
    assert accepted.status_code == 200
    job_url = jobs + accepted.json()["submission_id"]
    deadline = time.monotonic() + 120
    while (status := httpx.get(job_url, headers=bearer).json()["status"]) in ("PENDING", "RUNNING"):
        assert time.monotonic() < deadline, status
        time.sleep(1)
    assert status == "SUCCEEDED"

    gcs = grpc.insecure_channel(f"127.0.0.1:{env['TWOTOWER_RAY_PORT']}")
    nodes = gcs.unary_unary("/ray.rpc.NodeInfoGcsService/GetAllNodeInfo")
    with pytest.raises(grpc.RpcError) as refused_rpc:
        nodes(b"", timeout=30)
    assert refused_rpc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert nodes(b"", timeout=30, metadata=[("authorization", f"Bearer {token}")])
    gcs.close()

    # A driver of ours (nothing of Ray's in its environment: stack_env) gets in on its own.
    driver = subprocess.run(
        [sys.executable, "-c", DRIVER], env=env, capture_output=True, text=True, timeout=180
    )
    assert (driver.returncode, driver.stdout.strip()) == (0, "2.0"), driver.stderr[-2000:]


DRIVER = """
from cluster.config import get_settings  # first, as in every entry point of ours: see cluster/
from cluster.ray_connection import connect, ray
connect(get_settings(), quiet=True)
print(ray.cluster_resources()["CPU"])
"""


def test_up_status_down_and_data_survives(tmp_path):
    # Not under pytest's tmp root: pytest resets its mode, which would lock PostgreSQL out.
    state_dir = Path(tempfile.mkdtemp(prefix="tt-stack-"))
    env = stack_env(state_dir)
    settings = Settings(
        state_dir=state_dir, host="127.0.0.1", postgres_port=int(env["TWOTOWER_POSTGRES_PORT"]),
        postgres_dsn="",  # whatever the session's fixtures exported
    )  # fmt: skip
    dsn = settings.dsn  # the app role's, naming the password file the server writes
    s3 = Minio(
        f"127.0.0.1:{env['TWOTOWER_S3_PORT']}",
        access_key="twotower",
        secret_key="twotower-local-secret",
        secure=False,
    )
    try:
        first = run(env, "up", "--services-only")
        assert first.returncode == 0, first.stderr
        pg_address = f"postgresql://twotower@127.0.0.1:{env['TWOTOWER_POSTGRES_PORT']}/twotower"
        for address in (pg_address, f"http://127.0.0.1:{env['TWOTOWER_S3_PORT']}"):
            assert address in first.stdout
        assert f"http://127.0.0.1:{env['TWOTOWER_RAY_DASHBOARD_PORT']}" in first.stdout
        for secret in (state_dir / "secrets").iterdir():
            assert secret.read_text().strip().rsplit(":", 1)[-1] not in first.stdout
        assert run(env, "status").returncode == 0
        pids = recorded_processes(state_dir)
        assert len(pids) >= 3 and all(p.alive() for p in pids)
        assert_only_passwords_log_in(env, settings)
        assert_ray_wants_the_token(env, state_dir)

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
        assert_loopback_only(family)
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


# A config as Serve's template renders it, with what the wrapper must change.
SERVE_LIKE_CONFIG = """global
    stats socket {folder}/admin.sock mode 666 level admin expose-fd listeners
defaults
    mode http
    timeout connect 5s
    timeout client 3600s
    timeout http-keep-alive 5s
frontend prometheus
    bind :19101
frontend http_frontend
    bind 127.0.0.1:8000
listen stats
  bind *:18404
  stats enable
"""


def test_serve_haproxy_switches_and_its_wrapper_locks_serve_s_config_down(tmp_path):
    """With serve_haproxy, Serve runs our wrapper, which moves the wildcard binds of Serve's
    HAProxy template (stats page, Prometheus endpoint) to the stack's host, makes the admin
    socket 600, closes the folder and the sockets already in it (Serve's metrics socket), and
    gives `defaults` whole-request buffering (what makes a request replayable when its
    replica dies) and the timeouts of the settings. The wrapper is run for real here, with
    /bin/echo standing in for HAProxy: no test may open ports on every interface, which is
    what the real binary would do with the unrewritten file."""
    from cluster.haproxy import haproxy_env, serve_files_dir, write_wrapper

    assert haproxy_env(Settings(serve_haproxy=False), tmp_path / "off") == {}
    settings = Settings(
        state_dir=tmp_path, host="127.0.0.1", haproxy_stats_port=18404,
        haproxy_metrics_port=19101, haproxy_timeout_http_request_s=11,
        haproxy_timeout_client_s=61, haproxy_timeout_server_s=41,
    )  # fmt: skip
    env = haproxy_env(settings, tmp_path / "on")
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert (env["RAY_SERVE_HAPROXY_STATS_PORT"], env["RAY_SERVE_HAPROXY_METRICS_PORT"]) == (
        "18404",
        "19101",
    )
    assert os.access(env["RAY_SERVE_HAPROXY_BINARY_PATH"], os.X_OK)

    node = serve_files_dir(tmp_path) / "node-id"
    node.mkdir(parents=True)
    metrics = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        metrics.bind(str(node / "metrics.sock"))
        os.chmod(node / "metrics.sock", 0o666)  # as Serve leaves it
        config = node / "haproxy.cfg"
        config.write_text(SERVE_LIKE_CONFIG.format(folder=node))
        wrapper = write_wrapper(tmp_path / "echo", settings, "/bin/echo")
        args = ["-db", "-f", str(config), "-sf", "42"]
        done = subprocess.run([str(wrapper), *args], capture_output=True, text=True, check=True)
        assert done.stdout.split() == args  # the real binary gets Serve's arguments unchanged
        assert rendered_binds(config.read_text()) == [
            "127.0.0.1:19101", "127.0.0.1:8000", "127.0.0.1:18404"
        ]  # fmt: skip
        assert "mode 600 level admin" in config.read_text()
        defaults = config.read_text().split("\ndefaults\n", 1)[1].split("\nfrontend", 1)[0]
        assert "    option http-buffer-request\n" in defaults
        assert defaults_timeouts(config.read_text()) == {
            "connect": "5s", "client": "61s", "server": "41s", "http-request": "11s",
            "http-keep-alive": "5s",
        }  # fmt: skip
        assert stat.S_IMODE(node.stat().st_mode) == 0o700
        assert stat.S_IMODE((node / "metrics.sock").stat().st_mode) == 0o600
    finally:
        metrics.close()
        shutil.rmtree(serve_files_dir(tmp_path))


def rendered_binds(config: str) -> list[str]:
    return [line.split()[1] for line in config.splitlines() if line.strip().startswith("bind")]


def defaults_timeouts(config: str) -> dict[str, str]:
    """{name: value} of the `timeout` lines of the `defaults` section."""
    section = config.split("\ndefaults\n", 1)[1]
    lines = section.split("\n")
    body = lines[: next(i for i, line in enumerate(lines) if line and not line[0].isspace())]
    timeouts = [line.split() for line in body if line.strip().startswith("timeout ")]
    return {parts[1]: parts[2] for parts in timeouts}


def test_serve_s_haproxy_files_live_in_the_stack_s_folder_and_go_with_the_head(serving, tmp_path):
    """Serve's HAProxy (running for the session's app) writes its configuration and sockets
    where haproxy_env points it, not into /tmp/haproxy-serve, which nothing ever cleans; they
    are closed to other users and the rendered configuration has our binds and timeouts. A
    Ray head removes the folders it owns when it stops."""
    import ray

    from cluster.haproxy import serve_files_dir

    node_files = serve_files_dir(serving.state_dir) / ray.get_runtime_context().get_node_id()
    config = (node_files / "haproxy.cfg").read_text()
    print(config)
    assert f"stats socket {node_files}/admin.sock mode 600" in config
    assert {bind.rsplit(":", 1)[0] for bind in rendered_binds(config)} == {"127.0.0.1"}
    timeouts = defaults_timeouts(config)
    assert (timeouts["http-request"], timeouts["client"], timeouts["server"]) == (
        f"{serving.haproxy_timeout_http_request_s}s",
        f"{serving.haproxy_timeout_client_s}s",
        f"{serving.haproxy_timeout_server_s}s",
    )
    assert stat.S_IMODE(node_files.stat().st_mode) == 0o700
    sockets = {p.name: stat.S_IMODE(p.stat().st_mode) for p in node_files.iterdir()
               if p.is_socket()}  # fmt: skip
    print("sockets:", sockets)
    assert {"admin.sock", "metrics.sock"} <= set(sockets)
    assert set(sockets.values()) == {0o600}

    owned = tmp_path / "owned"
    (owned / "node").mkdir(parents=True)
    (owned / "node" / "haproxy.cfg").write_text("global\n")
    RayHead(tmp_path / "no-such-ray", 0, 0, 0, owned_dirs=(owned,)).stop()
    assert not owned.exists()


def test_serve_s_sockets_stay_on_loopback_and_replicas_want_the_ray_token(serving):
    """Every listening socket of the serving session's processes (Ray, Serve, HAProxy) is on
    loopback, the replicas' inter-deployment gRPC servers too (Serve binds them to [::]
    unless told otherwise: cluster.ray_connection.keep_replica_grpc_on_loopback). Ray's token
    interceptor guards those as well: each replica has a port that refuses a call without it."""
    from deployments.serve_control import serve_details

    ours = [ProcessRef.of(p) for p in psutil.Process().children(recursive=True)]
    sockets = listening(ours)
    print("listening:", *(f"{ip}:{port} {name}" for ip, port, name in sockets), sep="\n  ")
    assert sockets and [s for s in sockets if not loopback(s[0])] == []
    replicas = [
        replica["pid"]
        for app in serve_details()["applications"].values()
        for deployment in app["deployments"].values()
        for replica in deployment["replicas"]
    ]
    assert replicas
    for pid in replicas:
        codes = {grpc_code(ip, port) for ip, port, _ in listening([ProcessRef.of(pid)])}
        assert grpc.StatusCode.UNAUTHENTICATED in codes, (pid, codes)


def grpc_code(ip: str, port: int) -> grpc.StatusCode | None:
    """What a Serve inter-deployment call without Ray's token gets from ip:port."""
    host = ip.removeprefix("::ffff:")
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        call = channel.unary_unary("/ray.serve.ASGIService/HandleRequest")
        try:
            call(b"", timeout=10)
        except grpc.RpcError as err:
            return err.code()
    return None
