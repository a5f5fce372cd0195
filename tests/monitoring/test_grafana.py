"""The Grafana dashboard and its provisioning: every panel query is valid PromQL (promtool
parses each one as a recording rule) and the panels the operators need are there."""

import json
import shutil
import subprocess

import yaml

from cluster.config import REPO_ROOT

GRAFANA = REPO_ROOT / "monitoring" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "twotower.json"


def panels() -> list[dict]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def test_every_panel_query_is_valid_promql(tmp_path):
    exprs = [t["expr"] for p in panels() for t in p["targets"]]
    assert len(exprs) >= 10
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs)
    ]}]}  # fmt: skip
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make test` installs it (apt-get install prometheus)"
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_shows_what_operators_need():
    titles = " | ".join(p["title"].lower() for p in panels())
    for needed in (
        "throughput",
        "latency",
        "error",
        "batch size",
        "replicas per deployment",
        "live model version",
    ):
        assert needed in titles, needed


def test_provisioning_points_at_the_dashboard_and_prometheus():
    datasource = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert all(p["datasource"]["uid"] == uid for p in panels())
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/twotower.yml").read_text())
    compose = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./monitoring/grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in (
        mounts
    )
