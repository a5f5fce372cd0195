"""Load on the real serving app, then the throughput in Prometheus's query API.

A real `prometheus` process (Debian's package) on a free port scrapes the real Ray metrics
export of the local Ray that serves the app. Ray's dashboard keeps the service-discovery file
up to date; the test Ray runs without a dashboard (to save memory), so when that file is
absent the test writes it in the same format from `ray.nodes()`, which is exactly what
Ray's writer does (ray/_private/metrics_agent.py: PrometheusServiceDiscoveryWriter).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import ray
import yaml

from monitoring import prometheus

REQUESTS = 120  # bounded: a few seconds of load on 2 cores
QUERIES = ["what causes botulism", "boiling point of water", "how long is a marathon"]


def discovery_file(folder: Path) -> Path:
    node = ray._private.worker._global_node  # the in-process head the `ray_local` fixture runs
    written_by_ray = Path(node.get_session_dir_path()) / prometheus.DISCOVERY_FILE
    if written_by_ray.exists():
        return written_by_ray
    targets = [
        f"{node['NodeManagerAddress']}:{node['MetricsExportPort']}"
        for node in ray.nodes()
        if node["Alive"]
    ]
    path = folder / prometheus.DISCOVERY_FILE
    path.write_text(json.dumps([{"labels": {"job": "ray"}, "targets": targets}]))
    return path


@pytest.fixture(scope="module")
def prometheus_server(serving, free_port, tmp_path_factory):
    folder = tmp_path_factory.mktemp("prometheus")
    settings = serving.model_copy(update={"prometheus_port": free_port()})
    server = prometheus.PrometheusServer(settings, folder, discovery_file(folder))
    server.start()
    # Scrape every 2 s instead of 10 s so the test waits less; everything else as rendered.
    config = yaml.safe_load(server.config.read_text())
    config["global"]["scrape_interval"] = "2s"
    config["global"]["scrape_timeout"] = "2s"
    server.config.write_text(yaml.safe_dump(config))
    server.reload()
    yield server
    server.stop()


def query(server, promql: str) -> float | None:
    body = httpx.get(f"{server.url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert body["status"] == "success", body
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def wait_for(server, promql: str, done, timeout: float = 90) -> float | None:
    """Poll an instant query until `done(value)`; Ray exports every ~10 s, we scrape every 2 s."""
    deadline = time.monotonic() + timeout
    value = query(server, promql)
    while not done(value) and time.monotonic() < deadline:
        time.sleep(2)
        value = query(server, promql)
    return value


def test_throughput_shows_up_in_prometheus(serving, prometheus_server):
    url = f"{serving.api_base_url}/search"
    # Per route: the app's own histogram (under HAProxy, Serve's `route` label is the app prefix).
    total = 'sum(ray_twotower_request_latency_ms_count{route="/search"})'
    # Prometheus is scraping this Ray (and nothing is in flight): the count before the load.
    assert wait_for(prometheus_server, 'up{job="ray"}', lambda v: v == 1) == 1
    before = query(prometheus_server, total) or 0.0

    def search(i: int) -> int:
        body = {"query": QUERIES[i % len(QUERIES)], "k": 10}
        return httpx.post(url, json=body, timeout=30).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(search, range(REQUESTS)))
    seconds = time.monotonic() - started
    assert codes.count(200) == REQUESTS
    print(f"\n{REQUESTS} searches in {seconds:.1f}s = {REQUESTS / seconds:.1f} req/s (client side)")

    after = wait_for(prometheus_server, total, lambda v: v is not None and v - before >= REQUESTS)
    assert after is not None and after - before >= REQUESTS, (before, after)
    # In all: Serve's front-door counter, which the website's status page and the alerts use.
    front_door = "sum(rate(ray_serve_num_http_requests_total[1m]))"
    throughput = wait_for(prometheus_server, front_door, lambda v: v is not None and v > 0)
    assert throughput is not None and throughput > 0
    print(f"Prometheus: +{after - before:.0f} /search requests, rate(1m) = {throughput:.2f} req/s")
