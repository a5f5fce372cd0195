"""Apply a Serve config to the running cluster and read back what each deployment runs.

Serve takes a config's ``http_options`` (host, port, ``request_timeout_s``) only when it
starts: a Serve already running keeps its own and ignores the new ones (Ray's
``serve_start``), so :func:`apply` says so instead of leaving the old timeout silently."""

from __future__ import annotations

import logging
import time

from ray.serve.schema import ServeDeploySchema

from cluster.ray_connection import serve_client
from deployments.app import APP_NAME

log = logging.getLogger(__name__)


def serve_details() -> dict | None:
    """Serve's full status (applications, deployments, replicas), or None when Serve is down."""
    client = serve_client()
    return None if client is None else client.get_serve_details()


def current_config() -> dict | None:
    """{deployment name: user_config} of the running app, or None when it is not deployed."""
    details = serve_details()
    app = (details or {}).get("applications", {}).get(APP_NAME)
    if not app or app.get("status") in ("DELETING", "NOT_STARTED"):
        return None
    return {
        name: (info.get("deployment_config") or {}).get("user_config")
        for name, info in app.get("deployments", {}).items()
    }


def _reached(app: dict, wanted: dict) -> bool:
    """Every wanted deployment runs its user_config and is healthy."""
    deployments = app.get("deployments", {})
    return app.get("status") == "RUNNING" and all(
        name in deployments
        and (deployments[name].get("deployment_config") or {}).get("user_config") == conf
        and deployments[name].get("status") == "HEALTHY"
        for name, conf in wanted.items()
    )


def ignored_http_options(running, wanted: dict) -> dict[str, tuple]:
    """{field: (running, wanted)} of the wanted http_options a running Serve (its
    ``HTTPOptions``) does not have; they take effect only when Serve starts again."""
    return {
        name: (getattr(running, name, None), value)
        for name, value in wanted.items()
        if getattr(running, name, None) != value
    }


def apply(config: dict, timeout_s: float = 600.0) -> None:
    """Submit a Serve config and wait until every replica runs it (user_config applied).
    Serve starts with the config's http_options if it is not running yet."""
    client = serve_client(config["http_options"], start=True)
    ignored = ignored_http_options(client.http_config, config["http_options"])
    if ignored:
        log.warning(
            "Serve is already running with other HTTP options, which it keeps until it "
            "restarts (`twotower down` then `up`): %s",
            ", ".join(f"{name} {old!r}, not {new!r}" for name, (old, new) in ignored.items()),
        )
    client.deploy_apps(ServeDeploySchema.model_validate(config))
    wanted = {d["name"]: d.get("user_config") for d in config["applications"][0]["deployments"]}
    deadline = time.monotonic() + timeout_s
    status = None
    while time.monotonic() < deadline:
        app = client.get_serve_details().get("applications", {}).get(APP_NAME) or {}
        status = app.get("status")
        if status == "DEPLOY_FAILED":
            raise RuntimeError(f"deploying {APP_NAME} failed: {app.get('message')}")
        if _reached(app, wanted):
            return
        time.sleep(0.25)
    raise TimeoutError(f"{APP_NAME} did not reach the new config in {timeout_s:.0f}s ({status})")
