"""Who may write and read documents (deployments/documents.py), on real Starlette requests."""

from __future__ import annotations

import stat

import pytest
from fastapi import HTTPException
from starlette.requests import Request

from cluster.config import Settings
from deployments.documents import Tokens


def request(authorization: str | None = None) -> Request:
    headers = [(b"authorization", authorization.encode())] if authorization else []
    return Request({"type": "http", "headers": headers})


def status_of(check, req: Request) -> int:
    with pytest.raises(HTTPException) as refused:
        check(req)
    return refused.value.status_code


def test_a_read_token_guards_searching_and_the_write_token_opens_both(tmp_path):
    tokens = Tokens(Settings(state_dir=tmp_path, api_write_token="w-tok", api_read_token="r-tok"))
    tokens.require_read(request("Bearer r-tok"))
    tokens.require_read(request("bearer w-tok"))  # the scheme's case does not matter
    tokens.require_write(request("Bearer w-tok"))
    assert status_of(tokens.require_read, request()) == 401
    assert status_of(tokens.require_read, request("Basic r-tok")) == 401
    assert status_of(tokens.require_read, request("Bearer nope")) == 403
    assert status_of(tokens.require_write, request("Bearer r-tok")) == 403


def test_without_a_read_token_searching_is_open_and_local_mode_makes_a_write_token(tmp_path):
    settings = Settings(state_dir=tmp_path)
    tokens = Tokens(settings)
    tokens.require_read(request())
    token_file = settings.write_token_file
    assert token_file.read_text().strip() == tokens.write and len(tokens.write) == 64
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert Tokens(settings).write == tokens.write  # made once, then kept
    assert status_of(tokens.require_write, request()) == 401


def test_production_mode_needs_the_write_token(tmp_path):
    with pytest.raises(ValueError, match="TWOTOWER_API_WRITE_TOKEN"):
        Settings(
            mode="production", state_dir=tmp_path, postgres_dsn="postgresql://x/y",
            s3_endpoint="s3:9000", s3_access_key="a", s3_secret_key="b",
        )  # fmt: skip
