"""Apply a Serve config to the running cluster and read back what each deployment runs."""

from __future__ import annotations

import time

from ray.serve.schema import ServeDeploySchema

from cluster.ray_connection import serve_client
from deployments.app import APP_NAME


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


def apply(config: dict, timeout_s: float = 600.0) -> None:
    """Submit a Serve config and wait until every replica runs it (user_config applied)."""
    client = serve_client(config["http_options"], start=True)
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
