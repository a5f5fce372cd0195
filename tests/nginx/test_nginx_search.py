"""nginx on loopback in front of the real stack: the serving app on a local Ray and the
website. Searches go through HTTPS (`/api/search`), the website and its websocket through `/`.
"""

from __future__ import annotations

import asyncio
import ssl

import httpx
import pytest
import websockets

from tests.nginx import frontdoor
from ui.server import WebsiteServer


@pytest.fixture(scope="module")
def front(serving, free_port, tmp_path_factory):
    website = WebsiteServer(serving, tmp_path_factory.mktemp("website"), port=free_port())
    website.start()
    with frontdoor.workdir() as root:
        secrets = frontdoor.make_secrets(root, "operator", "a long test password")
        http_port, https_port = free_port(), free_port()
        main = frontdoor.write_config(
            root,
            http_port=http_port,
            https_port=https_port,
            ui=f"127.0.0.1:{website.port}",
            api=f"127.0.0.1:{serving.serve_port}",
            dashboard=f"127.0.0.1:{free_port()}",  # the test Ray runs without a dashboard
            secrets=secrets,
        )
        with frontdoor.running(main, https_port):
            yield {"https": f"https://127.0.0.1:{https_port}", "cert": str(secrets["cert"])}
    website.stop()


def test_search_through_https(front):
    # The self-signed certificate made by init-secrets.sh is the trust anchor: real TLS checks.
    with httpx.Client(base_url=front["https"], verify=front["cert"], timeout=30) as client:
        response = client.post("/api/search", json={"query": "what causes botulism", "k": 10})
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["results"]) == 10
        assert [r["rank"] for r in body["results"]] == list(range(1, 11))
        assert response.headers["strict-transport-security"].startswith("max-age=")

        bad = client.post("/api/search", json={"query": "", "k": 10})
        assert 400 <= bad.status_code < 500  # the API's own refusal passes through unchanged
        assert "detail" in bad.json()


def test_website_and_its_websocket_through_https(front):
    page = httpx.get(front["https"] + "/", verify=front["cert"])
    assert page.status_code == 200 and "<title>" in page.text
    context = ssl.create_default_context(cafile=front["cert"])

    async def open_stream() -> int:
        url = front["https"].replace("https://", "wss://") + "/_stcore/stream"
        async with websockets.connect(url, ssl=context, open_timeout=10) as ws:
            return ws.protocol.state.value

    assert asyncio.run(open_stream()) == 1  # OPEN: the Upgrade went through nginx
