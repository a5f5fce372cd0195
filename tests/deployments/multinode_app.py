"""Run as its own process (the test session already did ray.init): a 3-node Ray cluster on
this machine, the app deployed with shard i pinned to node i+1 through a custom resource, and
searches through HTTP. Prints one JSON line: node of every replica and the rankings."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_AUTH_MODE"] = "disabled"  # a throwaway loopback cluster

import httpx  # noqa: E402
import ray  # noqa: E402
from ray import serve  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from cluster.config import get_settings  # noqa: E402
from deployments.app import APP_NAME  # noqa: E402
from deployments.rollout import deploy  # noqa: E402
from deployments.serve_control import serve_details  # noqa: E402
from tests.fixtures.serving import wait_healthy  # noqa: E402


def main(queries: list[str]) -> dict:
    settings = get_settings()
    node = {"num_cpus": 2, "node_ip_address": "127.0.0.1", "object_store_memory": 200 << 20}
    temp_dir = tempfile.mkdtemp(prefix="tt-mn-")  # not Ray's /tmp/ray, which nobody cleans
    os.environ["RAY_TMPDIR"] = temp_dir  # the nodes' session folders and the cluster file
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        workers = [
            cluster.add_node(**node, resources={f"{settings.shard_resource_prefix}{i}": 1})
            for i in range(settings.num_shards)
        ]
        ray.init(address=cluster.address)
        deploy(settings)
        wait_healthy(settings.api_base_url)
        rankings = {}
        for query in queries:
            r = httpx.post(
                f"{settings.api_base_url}/search",
                json={"query": query, "mode": "dense"},
                timeout=60,
            )
            r.raise_for_status()
            rankings[query] = [hit["doc_id"] for hit in r.json()["results"]]
        deployments = serve.status().applications[APP_NAME].deployments
        details = serve_details()
        placed = {
            name: sorted({rep["node_id"] for rep in info["replicas"]})
            for name, info in details["applications"][APP_NAME]["deployments"].items()
        }
        return {
            "head": cluster.head_node.node_id,
            "workers": [w.node_id for w in workers],
            "placed": placed,
            "healthy": sorted(deployments),
            "rankings": rankings,
        }
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
