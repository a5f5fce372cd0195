"""The Serve config: the file for `serve run/deploy`, and the one `twotower deploy` applies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from cluster.config import REPO_ROOT
from deployments.app import CODE_FILES, ENCODER, IMPORT_PATH, INGRESS, build_app, serve_config


def test_the_config_file_is_a_valid_serve_config_for_the_builder():
    raw = yaml.safe_load((REPO_ROOT / "deployments" / "serve_config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(raw)
    assert schema.applications[0].import_path == IMPORT_PATH
    assert schema.http_options.host == "127.0.0.1" and schema.http_options.port == 8000


def test_settings_shape_the_applied_config(settings):
    custom = settings.model_copy(
        update={"num_shards": 3, "shard_replicas": 2, "encoder_max_replicas": 4,
                "encoder_batch_size": 16, "shard_resource_prefix": "shard-",
                "ingress_batch_wait_s": 0.007, "encoder_batch_wait_s": 0.002}
    )  # fmt: skip
    config = serve_config(custom, ["a", "b"], "b")
    ServeDeploySchema.model_validate(config)  # what Serve itself accepts
    deployments = {d["name"]: d for d in config["applications"][0]["deployments"]}
    assert set(deployments) == {ENCODER, INGRESS, "IndexShard0", "IndexShard1", "IndexShard2"}
    assert deployments[ENCODER]["autoscaling_config"]["max_replicas"] == 4
    assert deployments[ENCODER]["user_config"]["versions"] == ["a", "b"]
    assert deployments[ENCODER]["user_config"]["max_batch_size"] == 16
    assert deployments["IndexShard2"]["num_replicas"] == 2
    assert deployments["IndexShard2"]["ray_actor_options"]["resources"] == {"shard-2": 0.01}
    assert deployments[INGRESS]["user_config"]["live"] == "b"
    # Each batching window reaches its own deployment: the ingress forms the batches.
    assert deployments[INGRESS]["user_config"]["batch_wait_timeout_s"] == 0.007
    assert deployments[ENCODER]["user_config"]["batch_wait_timeout_s"] == 0.002
    limits = {d["max_ongoing_requests"] for d in deployments.values()}
    assert limits == {settings.max_ongoing_requests}


def test_the_live_version_must_be_loaded(settings):
    with pytest.raises(ValueError, match="must be among the loaded"):
        serve_config(settings, ["a"], "b")


def test_the_builder_serves_the_store_s_live_version(tiny_version):
    _, version, _ = tiny_version
    app = build_app({"num_shards": 2})
    ingress = app._bound_deployment
    assert ingress.name == INGRESS
    assert ingress._deployment_config.user_config["live"] == version


def test_the_code_hash_covers_every_first_party_file_a_replica_imports():
    """A replica restarts on `twotower deploy` only when the hash of CODE_FILES changes, so a
    file it imports but the list misses (the log store's writer, once) would keep running old
    code after a deploy."""
    probe = (
        "import json, sys; import deployments.ingress, deployments.encoder, deployments.shard; "
        "print(json.dumps([m.__file__ for m in list(sys.modules.values()) "
        "if getattr(m, '__file__', None)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    first_party = {"cluster", "deployments", "monitoring", "training"}
    imported = set()
    for name in json.loads(out.stdout.splitlines()[-1]):
        path = Path(name).resolve()
        if path.is_relative_to(REPO_ROOT) and path.relative_to(REPO_ROOT).parts[0] in first_party:
            imported.add(path.relative_to(REPO_ROOT))
    covered = {
        file.relative_to(REPO_ROOT)
        for entry in CODE_FILES
        for file in ((REPO_ROOT / entry).rglob("*.py") if (REPO_ROOT / entry).is_dir()
                     else [REPO_ROOT / entry])
    }  # fmt: skip
    assert {
        "deployments/ingress.py",
        "cluster/logstore/writer.py",
        "cluster/logstore/reader.py",
    } <= {str(p) for p in imported}
    assert imported <= covered, f"not in CODE_FILES: {sorted(map(str, imported - covered))}"


def test_by_default_two_replicas_of_everything_a_search_needs_and_time_limits(settings):
    """One crashed replica must not stop search (tests/deployments/test_faults.py)."""
    config = serve_config(settings, ["a"], "a")
    deployments = {d["name"]: d for d in config["applications"][0]["deployments"]}
    assert deployments[INGRESS]["num_replicas"] == 2
    assert deployments[ENCODER]["autoscaling_config"]["min_replicas"] == 2
    assert all(deployments[f"IndexShard{i}"]["num_replicas"] == 2 for i in range(2))
    assert config["http_options"]["request_timeout_s"] == settings.serve_request_timeout_s
    assert settings.serve_request_timeout_s > settings.backend_timeout_s  # ours answer first
    ingress = deployments[INGRESS]["user_config"]
    assert ingress["feedback_client_burst"] == settings.feedback_client_burst
    assert ingress["feedback_session_rate_per_s"] == settings.feedback_session_rate_per_s
