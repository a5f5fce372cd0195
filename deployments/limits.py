"""Limits the ingress enforces itself, whatever stands in front of it: the size and shape of a
request body, and how fast one client or one session may send feedback.

Both are per ingress replica and in memory: nothing is shared between replicas, so a client
whose requests spread over N replicas may get up to N times a rate, and a restarted replica
starts with full buckets. That is enough to keep one client from flooding the clicks the
learning loop trains on (it also drops bot-fast sessions itself); nginx adds a per-address
limit in front (nginx/twotower.conf.template).
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict

from starlette.responses import JSONResponse

MAX_KEYS = 100_000  # buckets kept per limiter; the least recently used are forgotten


class BodyRejected(ValueError):
    """A request body the API refuses before reading it as a request: ``status`` and why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def _number(max_chars: int, convert):
    def parse(text: str):
        if len(text) > max_chars:
            raise BodyRejected(
                400, f"a JSON number has {len(text)} characters; the limit is {max_chars}"
            )
        value = convert(text)
        if isinstance(value, float) and not math.isfinite(value):
            raise BodyRejected(400, f"the JSON number {text} is out of range")
        return value

    return parse


def _not_json(name: str):
    raise BodyRejected(400, f"{name} is not a JSON value")


def _depth(value: object) -> int:
    """Nesting depth of parsed JSON (a scalar is 0, [] or {} is 1), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            level += 1
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level) for child in children)
    return deepest


def check_json(body: bytes, max_depth: int, max_number_chars: int) -> None:
    """Raise BodyRejected (400) for a body that is not UTF-8, nests deeper than ``max_depth``
    or holds a number literal longer than ``max_number_chars`` (or NaN/Infinity). Malformed
    JSON passes: FastAPI's own parser then answers 422 with the position of the error."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BodyRejected(400, f"the request body is not UTF-8 text (byte {err.start})") from None
    try:
        value = json.loads(
            text.removeprefix("\ufeff"),  # FastAPI reads a BOM-led body too
            parse_int=_number(max_number_chars, int),
            parse_float=_number(max_number_chars, float),
            parse_constant=_not_json,
        )
    except RecursionError:
        raise BodyRejected(400, f"the JSON body nests deeper than {max_depth} levels") from None
    except BodyRejected:
        raise
    except ValueError:
        return
    if _depth(value) > max_depth:
        raise BodyRejected(400, f"the JSON body nests deeper than {max_depth} levels")


def _check_media_type(scope) -> None:
    """A body must be JSON: sent as application/json (or +json), or with no content type,
    which FastAPI reads as JSON too."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media = value.split(b";")[0].strip().lower()
            if media != b"application/json" and not media.endswith(b"+json"):
                shown = media.decode("latin-1")[:60]
                raise BodyRejected(415, f"the body is {shown}; send it as application/json")


def _declared_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyGuard:
    """ASGI middleware: reads the body first (at most ``max_bytes``), refuses it with 413, 415
    or 400 and a sentence, and otherwise hands the same bytes on to the app."""

    def __init__(
        self,
        app,
        max_bytes: int,
        max_depth: int,
        max_number_chars: int,
        larger: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger or {}  # path prefix -> its own limit (document batches)
        self.max_depth = max_depth
        self.max_number_chars = max_number_chars

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read(scope, receive)
            if body is None:  # the client went away before its body arrived: nobody to answer
                return
            if body:
                _check_media_type(scope)
                check_json(body, self.max_depth, self.max_number_chars)
        except BodyRejected as err:
            response = JSONResponse({"detail": str(err)}, status_code=err.status)
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, scope, receive) -> bytes | None:
        path = scope.get("path", "")
        limit = next((n for p, n in self.larger.items() if path.startswith(p)), self.max_bytes)
        too_large = BodyRejected(413, f"the request body is larger than {limit} bytes, the limit")
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            raise too_large
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class TokenBuckets:
    """A token bucket per key: ``burst`` requests at once, then ``rate_per_s`` on average."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate, self.burst = rate_per_s, burst
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> tokens, at

    def configure(self, rate_per_s: float, burst: int) -> None:
        self.rate, self.burst = rate_per_s, burst

    def allow(self, key: str) -> bool:
        """Take a token for ``key`` if it has one."""
        now = time.monotonic()
        tokens, at = self.buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        self.buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        while len(self.buckets) > MAX_KEYS:
            self.buckets.popitem(last=False)
        return allowed


def client_key(scope, header: str) -> str:
    """The client a request counts against: the trusted front door's header when set and
    present (nginx overwrites X-Real-IP with the real address), else the peer address."""
    if header:
        wanted = header.lower().encode()
        for name, value in scope.get("headers", ()):
            if name == wanted and value.strip():
                return value.decode("latin-1").strip()
    client = scope.get("client")
    return client[0] if client else "unknown"
