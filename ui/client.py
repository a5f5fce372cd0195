"""The website's only door to the outside: the serving HTTP API and Prometheus's query API.

Every failure becomes one of two exceptions with a message a person can read, so the pages
show a sentence instead of a traceback.
"""

from __future__ import annotations

from typing import Any

import httpx

TIMEOUT_S = 30.0  # a cold encoder on a busy machine can take seconds

# The connection was reset, or closed without an answer: the replica serving it died mid-request
# (HAProxy replays most such requests itself, not all: docs/serving.md, "Failures"), or a kept-
# alive connection was closed under us. An idempotent call is sent once more, on a new
# connection. A timeout is not retried (that would double the wait), nor is any answer.
RETRIED_ERRORS = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class BackendUnavailable(Exception):
    """The server could not be reached, or answered with a server error."""


class BackendError(Exception):
    """The server refused the request (4xx); the message is its `detail`."""


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    if isinstance(detail, list):  # FastAPI validation errors: [{"msg": ..., "loc": ...}]
        detail = "; ".join(str(item.get("msg", item)) for item in detail)
    return str(detail)[:300] or response.reason_phrase


class SearchApi:
    """A small synchronous client for the Ray Serve HTTP API (docs/api.md).

    A search and every GET are sent once more when their connection breaks without an answer
    (``RETRIED_ERRORS``); a feedback is not (it would count twice), and no answer is retried,
    4xx or 5xx. A search sent twice may be logged twice, like a search the user repeats."""

    def __init__(
        self, base_url: str, timeout: float = TIMEOUT_S, client_header: str = "x-real-ip"
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_header = client_header
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def _as(self, visitor: str | None) -> dict[str, str]:
        """The header that names the person behind a request. The website calls the API from
        its own server, so without it every visitor would count as one client (one vote in
        the click memory, one bucket of the rate limits)."""
        return {self.client_header: visitor} if visitor and self.client_header else {}

    def _send(self, method: str, path: str, retry: bool, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except RETRIED_ERRORS:
            if not retry:
                raise
        return self._http.request(method, path, **kwargs)  # once more, on a new connection

    def _call(self, method: str, path: str, *, retry: bool | None = None, **kwargs: Any) -> Any:
        """``retry``: send once more when the connection breaks unanswered; None = GETs only."""
        try:
            response = self._send(
                method, path, method == "GET" if retry is None else retry, **kwargs
            )
        except httpx.HTTPError as exc:
            raise BackendUnavailable(
                f"The search service at {self.base_url} cannot be reached ({type(exc).__name__})."
            ) from exc
        if response.status_code >= 500:
            raise BackendUnavailable(
                f"The search service answered {response.status_code}: {_detail(response)}"
            )
        if response.status_code >= 400:
            raise BackendError(_detail(response))
        try:
            return response.json()
        except ValueError as exc:
            raise BackendUnavailable(
                f"The search service sent a response that is not JSON ({path})."
            ) from exc

    def search(
        self,
        query: str,
        mode: str | None = None,
        k: int = 10,
        session_id: str | None = None,
        visitor: str | None = None,
    ) -> dict:
        """``mode`` None: the server's default mode (the response says which answered)."""
        body = {"query": query, "k": k} | ({"mode": mode} if mode else {})
        if session_id:
            body["session_id"] = session_id
        headers = self._as(visitor)  # idempotent (a read), so retried
        return self._call("POST", "/search", retry=True, json=body, headers=headers)

    def feedback(self, search_id: str, doc_id: str, kind: str, visitor: str | None = None) -> dict:
        body = {"search_id": search_id, "doc_id": doc_id, "kind": kind}
        return self._call("POST", "/feedback", json=body, headers=self._as(visitor))

    def health(self) -> dict:
        return self._call("GET", "/healthz")

    def version(self) -> dict:
        return self._call("GET", "/version")

    def click_memory(self) -> dict:
        return self._call("GET", "/click-memory")

    def versions(self) -> Any:
        return self._call("GET", "/versions")

    def runs(self) -> Any:
        return self._call("GET", "/runs")


def prometheus_query(base_url: str, promql: str, timeout: float = 3.0) -> float | None:
    """One instant query; the first sample's value, None when there is no sample (or NaN).

    Raises BackendUnavailable when Prometheus cannot be reached or rejects the query.
    """
    try:
        response = httpx.get(
            f"{base_url.rstrip('/')}/api/v1/query", params={"query": promql}, timeout=timeout
        )
        payload = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise BackendUnavailable(f"Prometheus at {base_url} cannot be reached.") from exc
    if payload.get("status") != "success":
        raise BackendUnavailable(f"Prometheus rejected the query: {payload.get('error')}")
    samples = payload["data"]["result"]
    if not samples:
        return None
    value = float(samples[0]["value"][1])
    return None if value != value else value  # NaN (e.g. 0/0 in a ratio) means "no data"
