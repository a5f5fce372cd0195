"""Shards spread over the nodes of a 3-node Ray cluster rank exactly like one node."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cluster.config import REPO_ROOT
from tests.deployments.versions import rankings

QUERIES = ["what is botulism", "symptoms of the flu", "how long should you boil an egg"]


def test_shards_on_different_nodes_rank_like_one_node(tiny_version, free_port):
    settings, _, version_dir = tiny_version
    env = {
        **os.environ,
        "TWOTOWER_SERVE_PORT": str(free_port()),
        "TWOTOWER_SHARD_RESOURCE_PREFIX": "shard-",
        "TWOTOWER_NUM_SHARDS": "2",
        # This cluster's HAProxy beside the session's: its own stats and metrics ports.
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
    }
    env.pop("TWOTOWER_RAY_ADDRESS", None)
    result = subprocess.run(
        [sys.executable, "-m", "tests.deployments.multinode_app", json.dumps(QUERIES)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    shard_nodes = [report["placed"][f"IndexShard{i}"] for i in range(2)]
    assert shard_nodes == [[report["workers"][0]], [report["workers"][1]]]
    assert report["rankings"] == rankings(version_dir, QUERIES)
