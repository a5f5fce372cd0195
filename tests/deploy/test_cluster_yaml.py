"""cluster.yaml, checked the way `ray up` checks it before touching any cloud: Ray fills in its
provider defaults (`prepare_config`) and validates the result against its own JSON schema and
rules (`validate_config`). No cloud account is needed for either step."""

import copy

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from cluster.config import REPO_ROOT

CLUSTER_YAML = REPO_ROOT / "cluster.yaml"


@pytest.fixture
def config():
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_ray_accepts_cluster_yaml(config):
    validate_config(prepare_config(config))


def test_head_and_autoscaling_cpu_workers(config):
    prepared = prepare_config(config)
    workers = prepared["available_node_types"]["cpu_worker"]
    assert prepared["head_node_type"] == "head"
    assert 0 < workers["min_workers"] < workers["max_workers"] <= prepared["max_workers"]


def test_nodes_install_the_project_and_the_head_starts_everything(config):
    assert any("pip install" in c and "~/twotower" in c for c in config["setup_commands"])
    head = " ".join(config["head_start_ray_commands"])
    assert "--metrics-export-port=8080" in head  # metrics export for Prometheus
    assert "twotower up" in head  # Serve app, learning-loop scheduler, website, Prometheus
    workers = " ".join(config["worker_start_ray_commands"])
    assert "--metrics-export-port=8080" in workers


def test_ray_validation_can_fail(config):
    """The check has teeth: a typo'd field or an unknown head type is refused."""
    broken = copy.deepcopy(config)
    broken["max_wrokers"] = 3
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))
    broken = copy.deepcopy(config)
    broken["head_node_type"] = "nope"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(prepare_config(broken))


def test_every_node_runs_ray_with_token_auth_and_the_dashboard_on_loopback(config):
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in config[key] if "ray start" in c)
        assert "export RAY_AUTH_MODE=token" in start, key
        assert "${RAY_AUTH_TOKEN:?" in start, key  # refuses to start without the token
    head = next(c for c in config["head_start_ray_commands"] if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in head
    up = next(c for c in config["head_start_ray_commands"] if "twotower up" in c)
    assert "export RAY_AUTH_MODE=token" in up  # the drivers present the token too
