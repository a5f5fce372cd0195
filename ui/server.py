"""The website as a process: `streamlit run ui/app.py` on host:port, stopped by its PID.

Used by `twotower up` (with the configured port, 8501 by default) and by the browser tests
(with a free port). The backend and Prometheus URLs reach the pages as TWOTOWER_* variables,
read there through `get_settings()` like everywhere else.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cluster.config import REPO_ROOT, Settings
from cluster.processes import ManagedProcess, ProcessRef, http_ok

APP = REPO_ROOT / "ui" / "app.py"


class WebsiteServer(ManagedProcess):
    def __init__(self, settings: Settings, run_dir: Path, port: int | None = None):
        self.settings = settings
        self.host = settings.host
        self.port = port or settings.ui_port
        self.run_dir = Path(run_dir).resolve()
        self.pid_file = self.run_dir / "website.pid"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "streamlit", "run", str(APP),
            f"--server.address={self.host}",
            f"--server.port={self.port}",
            "--server.headless=true",
            "--browser.gatherUsageStats=false",
            "--server.fileWatcherType=none",
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "TWOTOWER_API_URL": self.settings.api_base_url,
            "TWOTOWER_PROMETHEUS_URL": self.settings.prometheus_base_url,
        }

    def healthy(self) -> bool:
        return http_ok(f"{self.url}/_stcore/health")

    def start(self, timeout: float = 60) -> ProcessRef:
        ref = self.running()
        if ref is not None:
            return ref
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return self.spawn(
            self.command(),
            env=self.env(),
            cwd=REPO_ROOT,  # picks up .streamlit/config.toml
            log=self.run_dir / "website.log",
            timeout=timeout,
            what=self.url,
        )
