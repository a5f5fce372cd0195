"""The Serve application: its builder, its config, and `deploy(settings)`.

The app is deployed declaratively (the same schema as ``serve deploy``): the import path and
args are fixed, and everything that changes at run time (which versions are loaded, the live
one, batch size and wait) travels in each deployment's ``user_config``. Serve applies a
``user_config``-only change in place, by calling ``reconfigure`` on the running replicas,
which is what makes rollouts cheap and safe (docs/serving.md, "Versions and rollouts").

- ``serve run deployments/serve_config.yaml`` / ``serve deploy deployments/serve_config.yaml``
  use :func:`build_app`, which loads the store's live version.
- ``twotower deploy`` renders :func:`serve_config` from the settings and applies it
  (:mod:`deployments.rollout`, through :mod:`deployments.serve_control`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from cluster.config import Settings, get_settings

APP_NAME = "twotower"
IMPORT_PATH = "deployments.app:build_app"
ENCODER, INGRESS = "QueryEncoder", "SearchIngress"
REPLICA_CPUS = 0.1  # logical CPUs per replica: each replica runs one thread anyway
# Every first-party file a replica imports (tests/deployments/test_config.py checks the list):
# a change to any of them must restart the replicas on the next `twotower deploy`.
CODE_FILES = (
    "deployments",
    "cluster/__init__.py",
    "cluster/api_tokens.py",
    "cluster/artifacts.py",
    "cluster/config.py",
    "cluster/corpora",
    "cluster/logstore",
    "cluster/metrics.py",
    "cluster/processes.py",
    "cluster/ray_connection.py",
    "cluster/servers.py",
    "training/__init__.py",
    "training/fusion.py",
    "training/index.py",
    "training/model.py",
    "training/text.py",
)
REPO = Path(__file__).resolve().parent.parent


def shard_name(shard_id: int) -> str:
    return f"IndexShard{shard_id}"


def code_hash() -> str:
    """Hash of the code replicas run: a code change makes Serve restart them, a version
    change (user_config only) does not."""
    digest = hashlib.sha256()
    for entry in CODE_FILES:
        path = REPO / entry
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------- deployment options
def encoder_user_config(settings: Settings, versions: list[str]) -> dict:
    return {
        "versions": list(versions),
        "max_batch_size": settings.encoder_batch_size,
        "batch_wait_timeout_s": settings.encoder_batch_wait_s,
    }


def ingress_user_config(settings: Settings, live: str) -> dict:
    """The live version, batching, and the feedback rate limits (changed in place, no restart)."""
    return {
        "live": live,
        "max_batch_size": settings.encoder_batch_size,
        "batch_wait_timeout_s": settings.ingress_batch_wait_s,
        "feedback_client_rate_per_s": settings.feedback_client_rate_per_s,
        "feedback_client_burst": settings.feedback_client_burst,
        "feedback_session_rate_per_s": settings.feedback_session_rate_per_s,
        "feedback_session_burst": settings.feedback_session_burst,
    }


def deployment_options(settings: Settings, versions: list[str], live: str) -> list[dict]:
    """Per-deployment options (the `deployments:` list of a Serve config)."""
    encoder = {
        "name": ENCODER,
        "max_ongoing_requests": settings.max_ongoing_requests,
        "autoscaling_config": {
            "min_replicas": settings.encoder_min_replicas,
            "max_replicas": settings.encoder_max_replicas,
            "target_ongoing_requests": settings.encoder_target_ongoing_requests,
            "upscale_delay_s": settings.encoder_upscale_delay_s,
            "downscale_delay_s": settings.encoder_downscale_delay_s,
        },
        "ray_actor_options": {"num_cpus": REPLICA_CPUS},
        "user_config": encoder_user_config(settings, versions),
    }
    shards = []
    for shard_id in range(settings.num_shards):
        actor: dict[str, Any] = {"num_cpus": REPLICA_CPUS}
        if settings.shard_resource_prefix:
            actor["resources"] = {f"{settings.shard_resource_prefix}{shard_id}": 0.01}
        shards.append(
            {
                "name": shard_name(shard_id),
                "num_replicas": settings.shard_replicas,
                "max_ongoing_requests": settings.max_ongoing_requests,
                "ray_actor_options": actor,
                "user_config": {"versions": list(versions)},
            }
        )
    ingress = {
        "name": INGRESS,
        "num_replicas": settings.ingress_replicas,
        "max_ongoing_requests": settings.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": REPLICA_CPUS},
        "user_config": ingress_user_config(settings, live),
    }
    return [encoder, *shards, ingress]


def serve_config(settings: Settings, versions: list[str], live: str) -> dict:
    """The whole Serve config (ServeDeploySchema) for these loaded versions and live one."""
    if live not in versions:
        raise ValueError(f"the live version {live} must be among the loaded {versions}")
    return {
        "proxy_location": "EveryNode",
        # request_timeout_s: Serve's own end-to-end limit, a last resort above the ingress's
        # per-call limits (it answers 408); applied when Serve starts, like host and port.
        "http_options": {
            "host": settings.host,
            "port": settings.serve_port,
            "request_timeout_s": settings.serve_request_timeout_s,
        },
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "args": {"num_shards": settings.num_shards, "code": code_hash()},
                "deployments": deployment_options(settings, versions, live),
            }
        ],
    }


# ---------------------------------------------------------------------- the builder
def build_app(args: dict | None = None):
    """Application builder for ``serve run/deploy``: the graph, with the live version of the
    store (or the pinned one) as the initial user_config."""
    from deployments.encoder import QueryEncoderDeployment
    from deployments.ingress import SearchIngress
    from deployments.shard import IndexShardDeployment
    from deployments.versions import target_version

    settings = get_settings()
    num_shards = int((args or {}).get("num_shards", settings.num_shards))
    live = target_version(settings)
    options = {o["name"]: o for o in deployment_options(settings, [live], live)}

    def configured(deployment, name: str):
        opts = {k: v for k, v in options[name].items() if k != "name"}
        return deployment.options(name=name, **opts)

    encoder = configured(QueryEncoderDeployment, ENCODER).bind()
    shards = [
        configured(IndexShardDeployment, shard_name(i)).bind(i, encoder)
        for i in range(num_shards)
        if shard_name(i) in options
    ]
    if len(shards) != num_shards:
        raise ValueError(f"args ask for {num_shards} shards, settings.num_shards is different")
    return configured(SearchIngress, INGRESS).bind(encoder, shards)
