"""Every error the API answers is ``{"detail": "<one sentence>"}`` (the ``ErrorBody`` of
``/openapi.json``): FastAPI's validation errors, HTTP errors, outages of the services the
ingress needs, and bugs alike, so no client ever has to parse a list or a bare 500."""

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.api_models import BOUNDS

log = logging.getLogger("ray.serve")

LOCATIONS = {"body", "query", "path", "header", "cookie"}
JSON_KINDS = {bool: "a boolean", str: "a string", float: "a fractional number", list: "an array",
              dict: "an object", type(None): "null"}  # fmt: skip


class ServiceUnavailable(Exception):
    """A service the API needs (S3, PostgreSQL, the search backend) failed or did not answer."""

    def __init__(self, service: str, why: str) -> None:
        super().__init__(f"{service} unavailable: {why}")


def _json_kind(value: object) -> str:
    """How a client would name a JSON value: 'a string ('10')', 'a boolean (true)', 'null'."""
    kind = JSON_KINDS.get(type(value), type(value).__name__)
    if value is None or isinstance(value, list | dict):
        return kind
    shown = repr(value) if isinstance(value, str) else json.dumps(value)
    return f"{kind} ({shown})" if len(shown) <= 40 else kind


def _field(loc: tuple) -> str:
    parts = list(loc[1:] if loc and loc[0] in LOCATIONS else loc)
    return ".".join(str(p) for p in parts)


def sentence(item: dict) -> str:
    """One readable sentence for one of pydantic's errors."""
    kind, name, value = item.get("type"), _field(tuple(item.get("loc", ()))), item.get("input")
    if kind == "json_invalid":
        return f"malformed JSON body: {item.get('ctx', {}).get('error', item.get('msg'))}"
    if kind in ("greater_than_equal", "less_than_equal") and name in BOUNDS:
        low, high = BOUNDS[name]
        return f"{name} must be between {low} and {high}, not {value}"
    if kind == "int_type":
        return f"{name} must be a JSON integer, not {_json_kind(value)}"
    if kind == "extra_forbidden":
        return f"{name} is not a field of this request"
    if not name and kind == "missing":
        return "the request has no JSON body"
    if not name and kind in ("model_attributes_type", "dict_type"):
        return f"the body must be a JSON object, not {_json_kind(value)}"
    return f"{name}: {item.get('msg')}" if name else str(item.get("msg"))


def validation_message(err: RequestValidationError) -> str:
    """One sentence for FastAPI's list of validation errors (a malformed body says only that)."""
    errors = err.errors()
    for item in errors:
        if item.get("type") == "json_invalid":
            return sentence(item)
    return "; ".join(sentence(item) for item in errors) or "invalid request"


async def _validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": validation_message(err)})


async def _http_error(
    request: Request, err: StarletteHTTPException, routes: list | None = None
) -> JSONResponse:
    detail = err.detail
    if err.status_code == 400 and detail == "There was an error parsing the body":
        detail = "the request body could not be read as JSON"
    headers = getattr(err, "headers", None)  # 405 carries Allow
    if err.status_code == 405 and (allowed := _allowed(request, routes or [])):
        headers = {**(headers or {}), "Allow": ", ".join(allowed)}
    return JSONResponse(status_code=err.status_code, content={"detail": detail}, headers=headers)


def _allowed(request: Request, routes: list) -> list[str]:
    """Every method some route of this path takes: Starlette names only the first route's,
    and /documents/{id} has two (GET and DELETE)."""
    path, root = request.scope.get("path", ""), request.scope.get("root_path", "").rstrip("/")
    paths = {path, path[len(root) :] if root and path.startswith(root + "/") else path}
    methods: set[str] = set()
    for route in _leaves(routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and any(regex.match(p) for p in paths):
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def _leaves(routes: list):
    """Every route, through included routers (FastAPI keeps them nested, as Serve includes the
    ingress's routes)."""
    for route in routes:
        nested = getattr(getattr(route, "original_router", None), "routes", None)
        if nested is None:
            nested = getattr(route, "routes", None)
        if nested is not None:
            yield from _leaves(nested)
        else:
            yield route


async def _unavailable(request: Request, err: ServiceUnavailable) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": str(err)})


async def _bug(request: Request, err: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=err)
    detail = f"internal error ({type(err).__name__}); the request was not completed"
    return JSONResponse(status_code=500, content={"detail": detail})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)

    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return await _http_error(request, err, app.router.routes)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(ServiceUnavailable, _unavailable)
    app.add_exception_handler(Exception, _bug)
