"""Zero-downtime version switches that never mix versions.

Every encoder and shard replica can hold several versions at once, keyed by version id, and
every request carries the version the ingress picked for it. A switch from A to B is three
in-place ``user_config`` updates, each applied to every replica before the next starts:

1. load:   encoder and shards hold {A, B}; the ingress still sends A.
2. flip:   the ingress sends B; its ``reconfigure`` returns once no A request is in flight.
3. unload: encoder and shards hold {B}.

No step fails a request (replicas keep serving while they load), and at every moment each
version a request can name is loaded everywhere, so a B vector never meets an A index.
"""

from __future__ import annotations

import logging

from cluster.artifacts import ArtifactStore
from cluster.config import Settings, get_settings
from cluster.ray_connection import connect
from deployments.app import INGRESS, serve_config
from deployments.serve_control import apply, current_config
from deployments.versions import target_version

log = logging.getLogger(__name__)


class RolloutError(RuntimeError):
    """A version cannot be rolled out (missing, or shaped differently from the deployment)."""


def _check_version(store: ArtifactStore, version: str, num_shards: int) -> None:
    files = store.manifest(version).files  # raises VersionNotFound for an unknown version
    have = sum(1 for f in files if f.startswith("index/shard-") and f.endswith(".faiss"))
    if have != num_shards:
        raise RolloutError(
            f"version {version} has {have} index shards but serving runs {num_shards} "
            "(set TWOTOWER_NUM_SHARDS to match and run `twotower deploy` again)"
        )


def live_version() -> str | None:
    """The version the running app's ingress serves, or None when no app runs."""
    config = current_config()
    return ((config or {}).get(INGRESS) or {}).get("live")


def switch(settings: Settings, target: str) -> None:
    """Make the running app serve ``target`` (deploy it first if it is not running)."""
    connect(settings, quiet=True)
    current = live_version()
    if current is None:
        log.info("deploying the app with version %s", target)
    elif current != target:
        log.info("rollout %s -> %s: loading both", current, target)
        apply(serve_config(settings, sorted({current, target}), current))
        log.info("rollout %s -> %s: switching the ingress", current, target)
        apply(serve_config(settings, sorted({current, target}), target))
        log.info("rollout %s -> %s: unloading %s", current, target, current)
    apply(serve_config(settings, [target], target))  # also finishes an interrupted rollout


def rollout(settings: Settings | None = None, version: str | None = None) -> str:
    """Make ``version`` (default: the pinned version, else the store's LATEST) live.

    A version named explicitly also becomes the store's LATEST once it is live.
    Returns the live version.
    """
    settings = settings or get_settings()
    store = ArtifactStore.from_settings(settings)
    target = version or target_version(settings, store)
    _check_version(store, target, settings.num_shards)
    switch(settings, target)
    if version and store.latest() != target:
        store.set_latest(target)
    return target


def rollback(settings: Settings | None = None) -> str:
    """Go back to the version that was live before (the store's history), the same way."""
    settings = settings or get_settings()
    store = ArtifactStore.from_settings(settings)
    previous = store.history()
    if not previous:
        raise RolloutError("nothing to roll back to: the store has no earlier live version")
    target = previous[0]
    _check_version(store, target, settings.num_shards)
    switch(settings, target)
    store.rollback(to=target)
    return target


def app_is_running(settings: Settings) -> bool:
    """True when this stack's Serve app is deployed: a newly published version should then
    be rolled out."""
    try:
        connect(settings, quiet=True)
    except ConnectionError:  # no Ray head: nothing serves
        return False
    return current_config() is not None


def deploy(settings: Settings | None = None) -> None:
    """Deploy the app, or refresh it: a running app moves to the target version through a
    rollout (zero downtime); a fresh one starts with the target version loaded."""
    settings = settings or get_settings()
    connect(settings, quiet=True)
    rollout(settings)
