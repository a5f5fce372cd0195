"""The front door's config on its own: `nginx -t`, redirect, headers, auth, size limits.

Upstreams here are loopback ports with nothing listening (a real refused connection), so
what is checked is what nginx itself decides; tests/nginx/test_nginx_search.py puts the real
serving app behind it.
"""

import socket

import httpx
import pytest

from tests.nginx import frontdoor


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def nginx_alone():
    with frontdoor.workdir() as root:
        yield from _run_alone(root)


def _run_alone(root):
    secrets = frontdoor.make_secrets(root, "operator", "correct horse battery")
    http_port, https_port, nowhere = free_port(), free_port(), f"127.0.0.1:{free_port()}"
    main = frontdoor.write_config(
        root,
        http_port=http_port,
        https_port=https_port,
        ui=nowhere,
        api=nowhere,
        dashboard=nowhere,
        secrets=secrets,
        rate="2r/s",
        burst=2,
    )
    with frontdoor.running(main, https_port):
        yield {"main": main, "http": http_port, "https": https_port, "secrets": secrets}


def test_nginx_t_accepts_the_config(nginx_alone):
    result = frontdoor.check(nginx_alone["main"])
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_template_placeholders_must_all_be_filled():
    with pytest.raises(KeyError, match="API_UPSTREAM"):
        frontdoor.render("server ${API_UPSTREAM}; $host", {})


def test_htpasswd_holds_a_hash_not_the_password(nginx_alone):
    line = nginx_alone["secrets"]["htpasswd"].read_text()
    assert line.startswith("operator:$apr1$")
    assert "correct horse" not in line


def test_http_redirects_to_https(nginx_alone):
    response = httpx.get(f"http://127.0.0.1:{nginx_alone['http']}/api/search?x=1")
    assert response.status_code == 301
    assert response.headers["location"] == (
        f"https://127.0.0.1:{nginx_alone['https']}/api/search?x=1"
    )


def test_security_headers_on_every_answer(nginx_alone):
    response = httpx.get(f"https://127.0.0.1:{nginx_alone['https']}/", verify=False)
    assert response.status_code == 502  # nothing behind it, but nginx still answered over TLS
    for header in (
        "strict-transport-security",
        "x-content-type-options",
        "x-frame-options",
        "content-security-policy",
        "referrer-policy",
    ):
        assert header in response.headers, header
    assert "server" not in response.headers or "/" not in response.headers["server"]


def test_dashboard_needs_the_password(nginx_alone):
    url = f"https://127.0.0.1:{nginx_alone['https']}/dashboard/"
    assert httpx.get(url, verify=False).status_code == 401
    assert httpx.get(url, verify=False, auth=("operator", "wrong")).status_code == 401
    right = httpx.get(url, verify=False, auth=("operator", "correct horse battery"))
    assert right.status_code == 502  # past the auth, to the (absent) dashboard


def test_large_request_bodies_are_refused(nginx_alone):
    response = httpx.post(
        f"https://127.0.0.1:{nginx_alone['https']}/api/search",
        content=b"x" * (128 * 1024),
        headers={"content-type": "application/json"},
        verify=False,
    )
    assert response.status_code == 413


def test_api_is_rate_limited(nginx_alone):
    url = f"https://127.0.0.1:{nginx_alone['https']}/api/healthz"
    with httpx.Client(verify=False) as client:
        codes = [client.get(url).status_code for _ in range(10)]  # limit is 2 r/s, burst 2
    assert 429 in codes
    assert codes[0] != 429  # the first request is within the limit
