"""Run the repo's nginx config on loopback: fill the template, wrap it like the official image
does (a main nginx.conf whose http block includes it), make the secrets with init-secrets.sh."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from cluster.config import REPO_ROOT

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TEMPLATE = REPO_ROOT / "nginx" / "twotower.conf.template"
INIT_SECRETS = REPO_ROOT / "nginx" / "init-secrets.sh"
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")

MAIN_CONF = """\
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    access_log {root}/access.log;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    include {root}/twotower.conf;
}}
"""


def render(template: str, values: dict[str, str]) -> str:
    """envsubst for the template's own placeholders; a missing value is an error, not a blank."""
    missing = sorted(set(PLACEHOLDER.findall(template)) - set(values))
    if missing:
        raise KeyError(f"no value for {missing}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def make_secrets(root: Path, user: str, password: str) -> dict[str, Path]:
    env = {
        **os.environ,
        "CERT_DIR": str(root / "certs"),
        "AUTH_DIR": str(root / "auth"),
        "DASHBOARD_USER": user,
        "DASHBOARD_PASSWORD": password,
    }
    subprocess.run(["sh", str(INIT_SECRETS)], env=env, check=True, capture_output=True)
    return {
        "cert": root / "certs" / "tls.crt",
        "key": root / "certs" / "tls.key",
        "htpasswd": root / "auth" / "htpasswd",
    }


def write_config(
    root: Path,
    *,
    http_port: int,
    https_port: int,
    ui: str,
    api: str,
    dashboard: str,
    secrets: dict[str, Path],
    rate: str = "50r/s",
    burst: int = 20,
) -> Path:
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    values = {
        "API_RATE_LIMIT": rate,
        "API_RATE_BURST": str(burst),
        "UI_UPSTREAM": ui,
        "API_UPSTREAM": api,
        "DASHBOARD_UPSTREAM": dashboard,
        "HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "HTTPS_LISTEN": f"127.0.0.1:{https_port}",
        "HTTPS_PUBLIC_PORT": str(https_port),
        "TLS_CERT": str(secrets["cert"]),
        "TLS_KEY": str(secrets["key"]),
        "HTPASSWD_FILE": str(secrets["htpasswd"]),
    }
    (root / "twotower.conf").write_text(render(TEMPLATE.read_text(), values))
    main = root / "nginx.conf"
    main.write_text(MAIN_CONF.format(root=root))
    return main


def check(main: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [NGINX, "-t", "-c", str(main), "-p", str(main.parent)], capture_output=True, text=True
    )


@contextmanager
def workdir():
    """A world-traversable folder: nginx workers drop to an unprivileged user and must read
    the htpasswd file (pytest's tmp_path is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="twotower-nginx-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def running(main: Path, https_port: int):
    """nginx in the foreground as a child process; stopped (by its pid) on exit."""
    proc = subprocess.Popen(
        [NGINX, "-c", str(main), "-p", str(main.parent), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {proc.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", https_port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)
