"""The one way this product joins Ray, and the one module that touches Ray's private APIs.

Every driver (the CLI, `up`, training, the learning loop, the bench) calls :func:`connect`;
the Serve control code gets its controller client from :func:`serve_client`. Ray's loopback
switch is set when the ``cluster`` package is imported (cluster/__init__.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import ray
from ray._private.authentication.authentication_token_setup import (
    maybe_enable_token_auth_if_token_available,
)
from ray._raylet import AuthenticationTokenLoader, Config

from cluster.config import Settings
from cluster.processes import port_in_use
from cluster.servers import RayHead

NAMESPACE = "twotower"


def connect(settings: Settings, *, start_local: bool = False, quiet: bool = False) -> bool:
    """Join the configured Ray cluster, else the local stack's head; with ``start_local``,
    start a private in-process Ray when neither is there (training outside the stack).
    ``quiet`` keeps the workers' output out of this process (control commands; training wants
    its workers' progress). A no-op when already connected. Returns True if it started Ray."""
    if ray.is_initialized():
        return False
    joinable = settings.ray_address or port_in_use(settings.host, settings.ray_port)
    if joinable or not start_local:
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


def serve_client(http_options: dict | None = None, *, start: bool = False):
    """Serve's controller client (None when Serve is not running and ``start`` is False).

    Private API: Serve's public calls can neither apply a whole declarative config (what
    `serve deploy` does) nor report the user_config each deployment runs; `serve deploy`
    and `serve status` use these same functions."""
    if start:
        from ray.serve._private.api import serve_start

        return serve_start(http_options=http_options or {})
    from ray.serve.context import _get_global_client

    return _get_global_client(raise_if_no_controller_running=False)
