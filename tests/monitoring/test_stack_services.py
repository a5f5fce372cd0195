"""`twotower up` manages the website and (where installed) Prometheus as app-stage services,
at the configured ports, so it starts them after serving and prints their URLs."""

import shutil

from cluster.config import Settings
from twotower.stack import services


def local(**overrides) -> Settings:
    """A stack that runs everything itself, whatever TWOTOWER_* the session fixtures set."""
    return Settings(ray_address="", postgres_dsn="", s3_endpoint="", **overrides)


def by_name(settings: Settings) -> dict:
    return {svc.name: svc for svc in services(settings)}


def test_website_and_prometheus_are_managed_services(tmp_path):
    settings = local(state_dir=tmp_path, ui_port=18501, prometheus_port=19090, host="127.0.0.1")
    stack = by_name(settings)
    website = stack["website"]
    assert (website.stage, website.port, website.address) == (
        "app",
        18501,
        "http://127.0.0.1:18501",
    )
    if shutil.which("prometheus"):
        prometheus = stack["prometheus"]
        assert (prometheus.stage, prometheus.address) == ("app", "http://127.0.0.1:19090")
        # it watches the discovery file of the Ray head this stack starts
        assert str(prometheus.server.discovery).startswith(str(stack["ray"].server.temp_dir))
    else:
        assert "prometheus" not in stack  # optional: only where the binary is installed


def test_compose_head_does_not_start_a_second_website(tmp_path):
    assert "website" not in by_name(local(state_dir=tmp_path, start_website=False))
