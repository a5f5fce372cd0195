"""The local Prometheus: its config rendered from the repo's files, and the process itself.

monitoring/prometheus.yml and rules.yml are written for compose (container paths). For the
local stack and the tests they are rendered into a folder with this machine's paths and
ports: the service-discovery file of *this* Ray, this Prometheus's own port, and the
configured no-fresh-model limit.
"""

from __future__ import annotations

import re
import shutil
import signal
import time
from pathlib import Path

import httpx
import yaml

from cluster.config import Settings
from cluster.processes import ManagedProcess, ProcessRef, http_ok, wait_until

HERE = Path(__file__).resolve().parent
CONFIG_TEMPLATE = HERE / "prometheus.yml"
RULES_TEMPLATE = HERE / "rules.yml"
DISCOVERY_FILE = "prom_metrics_service_discovery.json"  # what Ray's dashboard writes
MAX_AGE_RECORD = "twotower:model_max_age_alert_seconds"


def binary() -> str | None:
    """The `prometheus` executable (Debian's package), or None when it is not installed."""
    return shutil.which("prometheus")


def discovery_file(ray_temp_dir: Path) -> Path:
    """Ray keeps `<temp dir>/prom_metrics_service_discovery.json` listing every live node."""
    return Path(ray_temp_dir) / DISCOVERY_FILE


def render_rules(settings: Settings, out_dir: Path) -> Path:
    rules = yaml.safe_load(RULES_TEMPLATE.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("record") == MAX_AGE_RECORD:
                rule["expr"] = f"vector({int(settings.model_max_age_alert_s)})"
    path = Path(out_dir) / "rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def render(settings: Settings, out_dir: Path, discovery: Path) -> Path:
    """prometheus.yml (and rules.yml) for this machine, in `out_dir`; returns the config path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(CONFIG_TEMPLATE.read_text())
    config["rule_files"] = [str(render_rules(settings, out_dir))]
    for job in config["scrape_configs"]:
        for sd in job.get("file_sd_configs", []):
            sd["files"] = [str(discovery)]
        if job["job_name"] == "prometheus":
            job["static_configs"] = [{"targets": [f"{settings.host}:{settings.prometheus_port}"]}]
    path = out_dir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class PrometheusServer(ManagedProcess):
    """`prometheus` on host:port with its data in `data_dir`; stopped by the PID it started.

    The config is rendered into `data_dir` at every start, so a changed port or Ray temp dir
    is picked up by `twotower up` without any hand editing.
    """

    def __init__(self, settings: Settings, data_dir: Path, discovery: Path):
        self.settings = settings
        self.data_dir = Path(data_dir).resolve()
        self.discovery = Path(discovery)
        self.port = settings.prometheus_port
        self.host = settings.host
        self.pid_file = self.data_dir / "prometheus.pid"
        self.config = self.data_dir / "prometheus.yml"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def healthy(self) -> bool:
        return http_ok(f"{self.url}/-/ready")

    def start(self, timeout: float = 60) -> ProcessRef:
        exe = binary()
        if exe is None:
            raise FileNotFoundError("prometheus is not installed (apt-get install prometheus)")
        render(self.settings, self.data_dir, self.discovery)
        ref = self.running()
        if ref is not None:
            self.reload()
            return ref
        (self.data_dir / "tsdb").mkdir(parents=True, exist_ok=True)
        cmd = [
            exe,
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
            "--storage.tsdb.retention.time=7d",
            f"--web.listen-address={self.host}:{self.port}",
            # No --web.enable-lifecycle: POST /-/reload and /-/quit would let anyone who can
            # reach the port reconfigure or stop it. `reload` signals our own PID instead.
        ]
        return self.spawn(
            cmd,
            log=self.data_dir / "prometheus.log",
            cwd=self.data_dir,
            timeout=timeout,
            what=self.url,
        )

    def reload(self, timeout: float = 30) -> None:
        """Make the server we started re-read its config: SIGHUP to its PID (the lifecycle
        API is off), then wait until it reports a successful reload newer than the last."""
        ref = self.running()
        proc = ref.process() if ref else None
        if proc is None:
            raise RuntimeError(f"Prometheus on {self.url} was not started by this stack")
        before = self._last_reload()
        # The reload time has whole seconds: signal in the next second, so a new one shows.
        time.sleep(max(0.0, before + 1 - time.time()))
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self._last_reload() > before, timeout, f"{self.url} config reload")

    def _last_reload(self) -> float:
        """When the config was last loaded successfully (from Prometheus's own metrics)."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        success = re.search(r"^prometheus_config_last_reload_successful (\S+)$", text, re.M)
        stamp = re.search(
            r"^prometheus_config_last_reload_success_timestamp_seconds (\S+)$", text, re.M
        )
        if not (success and stamp) or float(success[1]) != 1:
            return 0.0
        return float(stamp[1])
