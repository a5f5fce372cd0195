"""The one way this product joins Ray, and the one module that touches Ray's private APIs.

Every driver (the CLI, `up`, training, the learning loop, the bench) calls :func:`connect`;
the Serve control code gets its controller client from :func:`serve_client`. Ray's loopback
switch is set when the ``cluster`` package is imported (cluster/__init__.py).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import time
from pathlib import Path

import ray
from ray._private.authentication.authentication_token_setup import (
    maybe_enable_token_auth_if_token_available,
)
from ray._raylet import AuthenticationTokenLoader, Config

from cluster.config import Settings
from cluster.processes import port_in_use
from cluster.servers import RayHead

log = logging.getLogger(__name__)
SERVE_START_ATTEMPTS = 3

NAMESPACE = "twotower"
PROBE_TIMEOUT_S = 2.0  # one TCP connect to the head's GCS port (loopback refuses at once)


class RayUnreachable(ConnectionError):
    """Nothing accepts connections on the Ray head's GCS port."""


def connect(
    settings: Settings, *, start_local: bool = False, quiet: bool = False, wait_s: float = 0.0
) -> bool:
    """Join the configured Ray cluster, else the local stack's head; with ``start_local``,
    start a private in-process Ray when neither is there (training outside the stack).
    ``quiet`` keeps the workers' output out of this process (control commands; training wants
    its workers' progress). A no-op when already connected. Returns True if it started Ray.

    The head's GCS port is tried first with a plain TCP connect: when nothing listens there,
    :class:`RayUnreachable` says so within seconds. ``ray.init`` takes no timeout and would
    retry for about 14 minutes: Ray 2.60 makes ``RAY_NUM_REDIS_GET_RETRIES`` (20) tries to
    build its ``GcsClient`` (``ray/_private/node.py``), each about 41 s here (5 s connect
    timeouts and ``py_gcs_connect_timeout_s``, 30 s). ``wait_s`` is how long to keep trying for
    a head that is still starting (its port not open yet); once the port is open, ``ray.init``
    waits for the GCS behind it as before."""
    if ray.is_initialized():
        return False
    joinable = settings.ray_address or port_in_use(settings.host, settings.ray_port)
    if joinable or not start_local:
        wait_for_head(settings.ray_connect_address, wait_s)
        _authenticate(settings)
        ray.init(
            address=settings.ray_connect_address,
            namespace=NAMESPACE,
            log_to_driver=not quiet,
            configure_logging=not quiet,
        )
        return False
    for attempt in range(3):  # a head on a busy machine can miss Ray's start-up window
        try:
            ray.init(
                num_cpus=settings.ray_num_cpus,
                include_dashboard=False,
                namespace=NAMESPACE,
                _node_ip_address=settings.host,  # loopback: never the machine's address
            )
            return True
        except Exception as err:  # Ray raises a bare Exception for this
            if "timed out during startup" not in str(err) or attempt == 2:
                raise
            ray.shutdown()
    return True


def _gcs_endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) that a ``ray.init`` address connects to first, None when it names none
    ("auto", "local")."""
    hostport = address.split("://", 1)[-1].split("/", 1)[0]  # ray://host:port too
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def wait_for_head(address: str, wait_s: float = 0.0) -> None:
    """Return once something accepts TCP connections at ``address`` (the head's GCS port);
    keep trying for ``wait_s`` seconds, then raise :class:`RayUnreachable`."""
    endpoint = _gcs_endpoint(address)
    if endpoint is None:
        return
    deadline = time.monotonic() + max(wait_s, 0.0)
    while True:
        try:
            with socket.create_connection(endpoint, timeout=PROBE_TIMEOUT_S):
                return
        except OSError as err:
            reason = err.strerror or type(err).__name__
            if time.monotonic() >= deadline:
                waited = f" after waiting {wait_s:g}s" if wait_s > 0 else ""
                raise RayUnreachable(
                    f"no Ray head accepts connections at {address}{waited} ({reason.lower()})"
                ) from err
        time.sleep(min(0.5, max(deadline - time.monotonic(), 0.0)))


def _authenticate(settings: Settings) -> None:
    """Token authentication, decided here for every driver of ours. The local stack's head
    (`twotower up`) requires the token it keeps in the state folder. Any other cluster gets
    what Ray itself would do: RAY_AUTH_MODE / RAY_AUTH_TOKEN(_PATH) from the environment
    (compose, `ray up`), else ~/.ray/auth_token if it exists, which `ray.init` with an
    explicit address only reads when told to. Private API: Ray has no public call for this."""
    token_file = RayHead.token_file_for(settings.state_dir)
    own_head = settings.ray_connect_address == f"{settings.host}:{settings.ray_port}"
    if own_head and token_file.exists():
        use_token_file(token_file)
    else:
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def use_token_file(token_file: Path) -> None:
    """Token authentication with the token in `token_file`, for this process and the
    processes it starts (a Ray started here, drivers, subprocesses)."""
    os.environ.pop("RAY_AUTH_TOKEN", None)  # it would win over the file
    os.environ.update(RayHead.auth_env(token_file))
    Config.initialize("")  # Ray caches its config (and the auth mode) per process
    AuthenticationTokenLoader.instance().reset_cache()


def keep_replica_grpc_on_loopback() -> None:
    """Bind this Serve replica's inter-deployment gRPC server to the node's loopback address
    when the node is on loopback (the local stack), instead of every interface.

    Private API, and the only switch there is: Serve binds that server to "[::]:0", hard-coded
    in ray/serve/_private/replica.py, with no setting. Each deployment calls this in its
    constructor, which runs in the replica before Serve starts the server. On a multi-machine
    cluster the node's address is not loopback and nothing changes."""
    from ray.serve._private import replica

    bind = replica.add_port_to_grpc_server
    if getattr(bind, "loopback_only", False):
        return
    node_ip = ray.util.get_node_ip_address()
    if not ipaddress.ip_address(node_ip).is_loopback:
        return

    def bind_on_loopback(server, address: str) -> int:
        if address.startswith("[::]:"):
            address = f"{node_ip}:{address.removeprefix('[::]:')}"
        return bind(server, address)

    bind_on_loopback.loopback_only = True
    replica.add_port_to_grpc_server = bind_on_loopback


def serve_client(http_options: dict | None = None, *, start: bool = False):
    """Serve's controller client (None when Serve is not running and ``start`` is False).

    Private API: Serve's public calls can neither apply a whole declarative config (what
    `serve deploy` does) nor report the user_config each deployment runs; `serve deploy`
    and `serve status` use these same functions."""
    if start:
        from ray.serve._private.api import serve_start

        for attempt in range(1, SERVE_START_ATTEMPTS + 1):
            try:
                return serve_start(http_options=http_options or {})
            except (ray.exceptions.ActorDiedError, TimeoutError) as err:
                # On a starved machine Serve's controller can kill a proxy that misses its
                # health checks while starting, and starts another: wait for that one.
                if attempt == SERVE_START_ATTEMPTS:
                    raise
                log.warning("Serve's proxy did not come up (%s); waiting for its successor", err)
    from ray.serve.context import _get_global_client

    return _get_global_client(raise_if_no_controller_running=False)
