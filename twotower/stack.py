"""The local stack behind `twotower up`, `down` and `status`.

The stack is a short list of `Service`s, each wrapping a server object that can `start()`
(blocking until healthy), `stop()` (by the PIDs it started) and report `healthy()`; see
cluster/servers.py. Everything runs on loopback with its data under `settings.state_dir`.
A service whose settings point elsewhere (a DSN, an S3 endpoint, a Ray address) is external:
it is health-checked but never started or stopped. `state_dir/stack.json` records what `up`
started, so `down` stops exactly that and nothing else.

Adding a service (e.g. the website or Prometheus) takes one server class with
`start() / stop() / healthy()` (see ui/server.py) and one entry in `services()`:

    Service(
        "website",
        settings_url,                                        # shown by status and by `up`
        WebsiteServer(settings, settings.state_dir / "website"),
        port=settings.ui_port,                               # refused if someone else holds it
        stage="app",                                         # started after model + serving
    )

`stage="services"` entries start first (and are all that `up --services-only` starts);
`stage="app"` entries start after the model version is ensured and the Serve app is deployed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import psutil
import psycopg
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cluster.api_tokens import write_token
from cluster.artifacts import minio_client
from cluster.config import Settings, get_settings, settings_env
from cluster.haproxy import haproxy_env, serve_files_dir
from cluster.processes import ProcessRef, port_in_use, terminate
from cluster.servers import EmbeddedPostgres, RayHead, SeaweedS3
from monitoring.prometheus import PrometheusServer, binary, discovery_file
from ui.server import WebsiteServer

STATE_FILE = "stack.json"
DEFAULT_RAY_CPUS = 8  # logical CPUs, oversubscribed on purpose: Serve and Train share the cores
console = Console()


class StackError(RuntimeError):
    """A problem the user can fix (a taken port, a missing part); printed without a traceback."""


class Server(Protocol):
    def start(self) -> Any: ...
    def stop(self) -> None: ...
    def healthy(self) -> bool: ...


class External:
    """A server someone else runs: only its health is ours to check."""

    def __init__(self, check: Callable[[], bool]):
        self._check = check

    def healthy(self) -> bool:
        try:
            return bool(self._check())
        except Exception:
            return False

    def start(self) -> None:
        raise RuntimeError("an external service is never started by the stack")

    def stop(self) -> None:
        raise RuntimeError("an external service is never stopped by the stack")


@dataclass
class Service:
    name: str
    address: str
    server: Server
    port: int | None = None  # a port this service must own on settings.host
    extra_ports: tuple[int, ...] = ()  # more of them (e.g. those of the Ray head's HAProxy)
    stage: Literal["services", "app"] = "services"
    external: bool = False
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- the services
def _postgres(settings: Settings) -> Service:
    if settings.postgres_dsn:

        def check() -> bool:
            with psycopg.connect(settings.postgres_dsn, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return True

        host = settings.postgres_dsn.split("@")[-1]  # never print the password
        return Service("postgresql", host, External(check), external=True)
    server = EmbeddedPostgres(
        settings.state_dir / "postgres",
        settings.postgres_port,
        settings.host,
        secrets_dir=settings.secrets_dir,
    )
    return Service("postgresql", server.dsn, server, port=settings.postgres_port)


def _s3(settings: Settings) -> Service:
    if settings.s3_endpoint:
        return Service(
            "s3", settings.s3_endpoint, External(lambda: _s3_reachable(settings)), external=True
        )
    server = SeaweedS3(
        settings.state_dir / "seaweedfs",
        settings.s3_port,
        settings.s3_access_key.get_secret_value(),
        settings.s3_secret_key.get_secret_value(),
        settings.host,
    )
    return Service("s3", server.endpoint, server, port=settings.s3_port)


def _s3_reachable(settings: Settings) -> bool:
    # Raises unless the server answers and the keys work. Health only: the artifact store, not
    # this check, creates the bucket.
    minio_client(settings).bucket_exists(settings.s3_bucket)
    return True


def _ray(settings: Settings) -> Service:
    if settings.ray_address:
        address = settings.ray_address.split("://")[-1]
        host, _, port = address.rpartition(":")
        return Service(
            "ray",
            settings.ray_address,
            External(lambda: port.isdigit() and port_in_use(host or settings.host, int(port))),
            external=True,
        )
    server = RayHead(
        RayHead.temp_dir_for(settings.state_dir),
        settings.ray_port,
        settings.ray_dashboard_port,
        settings.ray_num_cpus or DEFAULT_RAY_CPUS,
        settings.host,
        metrics_port=settings.metrics_port,
        env={**settings_env(settings), **haproxy_env(settings, settings.state_dir / "haproxy")},
        owned_dirs=(serve_files_dir(settings.state_dir),),  # nothing there without HAProxy
        token_file=RayHead.token_file_for(settings.state_dir),
    )
    haproxy = (settings.haproxy_stats_port, settings.haproxy_metrics_port)
    return Service(
        "ray",
        f"{server.address} (dashboard {server.dashboard_url})",
        server,
        port=settings.ray_port,
        extra_ports=haproxy if settings.serve_haproxy else (),
    )


def _prometheus(settings: Settings) -> list[Service]:
    """Prometheus on loopback, only where the `prometheus` binary is installed (Debian's
    package); it scrapes every Ray node through the discovery file of the Ray it watches."""
    if binary() is None:
        return []
    # An external Ray (e.g. `ray up cluster.yaml`) keeps its files in Ray's default /tmp/ray.
    ray_dir = Path("/tmp/ray") if settings.ray_address else RayHead.temp_dir_for(settings.state_dir)
    folder = settings.state_dir / "prometheus"
    server = PrometheusServer(settings, folder, discovery_file(ray_dir))
    return [Service("prometheus", server.url, server, port=settings.prometheus_port, stage="app")]


def _website(settings: Settings) -> list[Service]:
    if not settings.start_website:
        return []
    server = WebsiteServer(settings, settings.state_dir / "website")
    return [Service("website", server.url, server, port=settings.ui_port, stage="app")]


def services(settings: Settings) -> list[Service]:
    """Everything `up` manages, in start order (`down` stops them in reverse)."""
    return [
        _postgres(settings),
        _s3(settings),
        _ray(settings),
        *_prometheus(settings),
        *_website(settings),
    ]


# --------------------------------------------------------------------------- recorded state
class StackState:
    """`state_dir/stack.json`: which services this stack started, and their processes."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / STATE_FILE
        try:
            self.started: dict[str, dict] = json.loads(self.path.read_text())["started"]
        except (OSError, ValueError, KeyError):
            self.started = {}

    def record(self, name: str, address: str, refs: list[ProcessRef]) -> None:
        self.started[name] = {"address": address, "pids": [r.to_json() for r in refs]}
        self.save()

    def forget(self, name: str) -> None:
        self.started.pop(name, None)
        self.save()

    def refs(self, name: str) -> list[ProcessRef]:
        return [ProcessRef.from_json(p) for p in self.started.get(name, {}).get("pids", [])]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"started": self.started}, indent=2))
        os.replace(tmp, self.path)


def _as_refs(started: Any) -> list[ProcessRef]:
    if started is None:
        return []
    return list(started) if isinstance(started, list | tuple) else [started]


# --------------------------------------------------------------------------- commands
def _start_all(stack: list[Service], state: StackState, settings: Settings) -> None:
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        for svc in stack:
            task = progress.add_task(f"{svc.name}: checking", total=1)
            if svc.external:
                health = "reachable" if svc.server.healthy() else "NOT reachable"
                progress.update(task, description=f"{svc.name}: external, {health}", completed=1)
                continue
            if svc.name in state.started and svc.server.healthy():
                progress.update(task, description=f"{svc.name}: already running", completed=1)
                continue
            taken = [
                port
                for port in (svc.port, *svc.extra_ports)
                if port and svc.name not in state.started and port_in_use(settings.host, port)
            ]
            if taken:
                raise StackError(
                    f"{svc.name}: port {taken[0]} on {settings.host} is taken by a process this "
                    f"stack did not start; free it or set its TWOTOWER_*_PORT"
                )
            progress.update(task, description=f"{svc.name}: starting")
            refs = _as_refs(svc.server.start())
            state.record(svc.name, svc.address, refs)
            progress.update(task, description=f"{svc.name}: started", completed=1)


def up(services_only: bool = False, settings: Settings | None = None) -> None:
    """Start the stack (idempotent). Without `services_only`, also ensure a trained version,
    deploy the Serve app and start the app-stage services."""
    settings = settings or get_settings()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    state = StackState(settings.state_dir)
    stack = services(settings)
    started = time.monotonic()
    _start_all([s for s in stack if s.stage == "services"], state, settings)
    if not services_only:
        _start_product(settings)
        _start_all([s for s in stack if s.stage == "app"], state, settings)
    console.print(f"[bold green]up[/] in {time.monotonic() - started:.1f}s")
    _print_addresses(settings, stack, services_only)


def _start_product(settings: Settings) -> None:
    """The trained model, the Serve app and the learning-loop scheduler."""
    # Torch and Ray load only here, so `down` and `status` stay quick.
    from deployments.rollout import deploy
    from learning.scheduler import start_scheduler
    from training.pipeline import ensure_version

    # Training and serving both join the stack's Ray head (not a private Ray of this process,
    # which would take the Serve app down with it when `up` exits).
    settings = settings.model_copy(update={"ray_address": settings.ray_connect_address})
    console.print("model: ensuring a live version (an empty store gets the shipped release)")
    version = ensure_version(settings, log=lambda line: console.print(f"model: {line}"))
    console.print(f"model: live version {version}")
    clock = time.monotonic()
    with console.status("serving: deploying the Serve app (encoder, shards, ingress)"):
        deploy(settings)
    console.print(f"serving: ready at {settings.api_base_url} in {time.monotonic() - clock:.1f}s")
    with console.status("learning loop: starting the scheduler"):
        start_scheduler(settings)
    console.print(
        f"learning loop: scheduler running (every {settings.reinforce_interval_s}s, "
        f"at least {settings.reinforce_min_events} new feedback events)"
    )


def _print_addresses(settings: Settings, stack: list[Service], services_only: bool) -> None:
    table = Table(title="Two-Tower Search", show_header=True)
    table.add_column("service")
    table.add_column("address")
    for svc in stack:
        if svc.stage == "services" or not services_only:
            table.add_row(svc.name, svc.address)
    if not services_only:
        table.add_row("search API", f"{settings.api_base_url}/docs")
    console.print(table)
    if not services_only and settings.api_write_token is None:
        write_token(settings)  # generated now, so it can be read before the first write
        token = settings.write_token_file
        console.print(
            f"writing documents (PUT/DELETE /documents) needs the token in {token}: "
            f"`Authorization: Bearer $(cat {token})`"
        )


def down(settings: Settings | None = None) -> None:
    """Stop exactly the services `up` started, newest first. Data stays in the state folder."""
    settings = settings or get_settings()
    state = StackState(settings.state_dir)
    for svc in reversed(services(settings)):
        if svc.external or svc.name not in state.started:
            continue
        with console.status(f"stopping {svc.name}"):
            try:
                svc.server.stop()
            finally:
                terminate(state.refs(svc.name))  # anything recorded and still alive
        state.forget(svc.name)
        console.print(f"{svc.name}: stopped")
    if not state.started:
        console.print("nothing else of this stack is running")


def service_processes(svc: Service, state: StackState) -> list[psutil.Process]:
    """The live processes of a managed service: what `up` recorded, their children, and (for
    Ray) every process of our head, including workers started later."""
    refs = state.refs(svc.name)
    if hasattr(svc.server, "processes"):
        refs += svc.server.processes()
    found: dict[int, psutil.Process] = {}
    for ref in refs:
        proc = ref.process()
        if proc is None:
            continue
        for p in [proc, *proc.children(recursive=True)]:
            found[p.pid] = p
    return list(found.values())


def memory_bytes(procs: list[psutil.Process]) -> int:
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def status(settings: Settings | None = None) -> int:
    """Print each service, its address and health; 0 when all are healthy, else 1."""
    settings = settings or get_settings()
    state = StackState(settings.state_dir)
    table = Table(title=f"Two-Tower Search stack ({settings.state_dir})")
    for column in ("service", "address", "managed", "processes", "memory", "health"):
        table.add_column(column)
    all_healthy = True
    total = 0
    for svc in services(settings):
        healthy = svc.server.healthy()
        # An app-stage service that `up --services-only` left unstarted is not a failure.
        skipped = svc.stage == "app" and svc.name not in state.started and not healthy
        all_healthy &= healthy or skipped
        managed = "external" if svc.external else ("up" if svc.name in state.started else "no")
        procs = [] if svc.external else service_processes(svc, state)
        memory = memory_bytes(procs)
        total += memory
        mark = "[green]healthy[/]" if healthy else "not started" if skipped else "[red]unhealthy[/]"
        table.add_row(
            svc.name, svc.address, managed, str(len(procs)), f"{memory / 2**20:.0f} MiB", mark
        )
    console.print(table)
    console.print(f"memory of this stack's processes (sum of RSS): {total / 2**20:.0f} MiB")
    return 0 if all_healthy else 1
