"""Prometheus config and rules, checked by Prometheus's own tool (Debian's `prometheus`)."""

import shutil
import subprocess

import httpx
import yaml

from cluster.config import REPO_ROOT, Settings
from cluster.processes import free_port
from monitoring import prometheus

PROMTOOL = shutil.which("promtool")
MONITORING = REPO_ROOT / "monitoring"


def promtool(*args: str) -> subprocess.CompletedProcess:
    assert PROMTOOL, "promtool missing: `make test` installs it (apt-get install prometheus)"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=REPO_ROOT)


def test_promtool_check_config():
    result = promtool("check", "config", str(MONITORING / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_rules():
    result = promtool("check", "rules", str(MONITORING / "rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_when_they_should():
    """promtool's rule unit tests: synthetic series in, the expected alerts (and only those) out."""
    result = promtool("test", "rules", str(REPO_ROOT / "tests/monitoring/rules_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path):
    """The check has teeth: a rule with invalid PromQL is refused."""
    broken = tmp_path / "rules.yml"
    broken.write_text(
        yaml.safe_dump({"groups": [{"name": "x", "rules": [{"alert": "A", "expr": "sum(("}]}]})
    )
    assert promtool("check", "rules", str(broken)).returncode != 0


def test_rendered_local_config_is_valid(tmp_path):
    settings = Settings(host="127.0.0.1", prometheus_port=19090, model_max_age_alert_s=3600)
    discovery = tmp_path / "ray" / prometheus.DISCOVERY_FILE
    config_path = prometheus.render(settings, tmp_path / "prom", discovery)
    result = promtool("check", "config", str(config_path))
    assert result.returncode == 0, result.stdout + result.stderr

    config = yaml.safe_load(config_path.read_text())
    ray_job = next(job for job in config["scrape_configs"] if job["job_name"] == "ray")
    assert ray_job["file_sd_configs"][0]["files"] == [str(discovery)]
    rules = yaml.safe_load((tmp_path / "prom" / "rules.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]
             if r.get("record") == prometheus.MAX_AGE_RECORD]  # fmt: skip
    assert exprs == ["vector(3600)"]


def test_prometheus_has_no_lifecycle_api_and_reloads_on_our_signal(tmp_path):
    """Nobody can reconfigure or stop the local Prometheus over HTTP; `reload` (SIGHUP to the
    PID we started) still makes it read a changed config, and returns once it has."""
    settings = Settings(host="127.0.0.1", prometheus_port=free_port())
    discovery = tmp_path / prometheus.DISCOVERY_FILE
    server = prometheus.PrometheusServer(settings, tmp_path / "prom", discovery)
    server.start()
    try:
        for endpoint in ("/-/reload", "/-/quit"):
            response = httpx.post(f"{server.url}{endpoint}", timeout=5)
            print(endpoint, response.status_code, response.text.strip())
            assert response.status_code == 403
        config = yaml.safe_load(server.config.read_text())
        config["global"]["scrape_interval"] = "7s"
        server.config.write_text(yaml.safe_dump(config))
        server.reload()
        loaded = httpx.get(f"{server.url}/api/v1/status/config", timeout=5).json()
        assert "scrape_interval: 7s" in loaded["data"]["yaml"]
    finally:
        server.stop()
    assert server.running() is None
