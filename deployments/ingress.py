"""SearchIngress: the HTTP API (FastAPI through ``@serve.ingress``), see docs/architecture.md.

A search picks the live version once, on arrival, and that version travels with it to the
encoder and to every shard, so one request is served by one version end to end. Concurrent
searches are batched here (``@serve.batch``): one encoder call and one call per shard carry a
whole batch, which spreads Ray's per-call cost over many requests. A batch waits for more
searches (up to the window) only while another batch is in flight: then company is coming
and larger batches cost less CPU per search; a lone search goes at once. The search is logged
through the log store's non-blocking writer after the answer is built.

``user_config`` = ``{"live": version, "max_batch_size": n, "batch_wait_timeout_s": s}``.
Switching ``live`` returns only when no request of another version is still in flight here,
which is what lets a rollout unload the old version right after (docs/serving.md).

No ``from __future__ import annotations`` here: FastAPI must see the request models as real
classes, not strings, when Serve wraps the methods into routes.
"""

import asyncio
import logging
import math
import time
import uuid
from collections import Counter, OrderedDict, defaultdict
from typing import Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from cluster.artifacts import ArtifactStore
from cluster.config import get_settings
from cluster.logstore import FeedbackRecord, LogReader, LogWriter, ResultItem, SearchRecord
from cluster.metrics import serving_metrics
from deployments.merge import Hit, fuse_hits, merge_topk
from training.fusion import FUSION_DEPTH

log = logging.getLogger("ray.serve")

CONCURRENT_BATCHES = 4  # batches in flight per ingress replica: encode one while another searches
RECENT_SEARCHES = 50_000  # search_id -> shown pids kept in memory for instant feedback checks
FEEDBACK_LOOKUP_WAIT_S = 1.0  # a search may still sit in the log store's write queue
DRAIN_TIMEOUT_S = 60.0
ROUTES = {"/search", "/feedback", "/healthz", "/version", "/versions", "/runs"}

app = FastAPI(
    title="Two-Tower Search API",
    description="Semantic search over MS MARCO passages with a two-tower model.",
    version="1.0",
)


class SearchRequest(BaseModel):
    query: str = Field(description="What to search for (not empty, at most max_query_chars).")
    k: int = Field(10, description="How many results (1..max_k).")
    mode: Literal["dense", "hybrid"] | None = Field(
        None,
        description="hybrid (dense + BM25, weighted score fusion) or dense (the two-tower "
        "model alone); default: the server's default_mode setting (hybrid unless configured).",
    )
    session_id: str | None = Field(None, max_length=256)


class SearchResult(BaseModel):
    pid: int
    rank: int
    score: float
    text: str


class SearchResponse(BaseModel):
    search_id: str
    version: str
    latency_ms: float
    mode: Literal["dense", "hybrid"] = Field(description="The mode that answered.")
    results: list[SearchResult]


class FeedbackRequest(BaseModel):
    search_id: uuid.UUID
    pid: int = Field(ge=0)
    kind: Literal["click", "relevant", "not_relevant"]


def _message(err: RequestValidationError) -> str:
    """One readable sentence from FastAPI's list of validation errors."""
    parts = []
    for item in err.errors():
        if item.get("type") == "json_invalid":
            return f"malformed JSON body: {item.get('ctx', {}).get('error', item.get('msg'))}"
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
    return "; ".join(parts) or "invalid request"


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": _message(err)})


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
    detail = err.detail
    if err.status_code == 400 and detail == "There was an error parsing the body":
        detail = "the request body could not be read as JSON text (is it UTF-8?)"
    return JSONResponse(status_code=err.status_code, content={"detail": detail})


class MetricsMiddleware:
    """Requests by route and status with their latency, as one histogram (a plain ASGI
    middleware: Starlette's BaseHTTPMiddleware would cost more than some routes it measures)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        route = scope["path"] if scope["path"] in ROUTES else "other"
        status = 500

        async def send_and_note(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            serving_metrics().request_latency_ms.observe(
                (time.perf_counter() - started) * 1000, tags={"route": route, "status": str(status)}
            )


app.add_middleware(MetricsMiddleware)


def check_query(query: str, max_chars: int) -> str:
    """The query to search for, or an HTTP 422 that says what is wrong with it."""
    if any("\ud800" <= ch <= "\udfff" for ch in query):
        raise HTTPException(422, "query is not valid UTF-8 text (it holds lone surrogates)")
    if len(query) > max_chars:
        raise HTTPException(
            422, f"query has {len(query)} characters; the limit is {max_chars} (nothing is cut)"
        )
    if not query.strip():
        raise HTTPException(422, "query is empty: type some words to search for")
    return query.strip()


@serve.deployment(name="SearchIngress")
@serve.ingress(app)
class SearchIngress:
    def __init__(self, encoder: DeploymentHandle, shards: list[DeploymentHandle]) -> None:
        self.settings = get_settings()
        self.encoder = encoder
        self.shards = shards
        self.live: str | None = None
        self.in_flight: Counter[str] = Counter()
        self.recent: OrderedDict[str, dict[int, int]] = OrderedDict()
        self.manifests: dict[str, dict] = {}
        self.log_writer = LogWriter(self.settings)  # searches and feedback, never blocking
        self.log_reader = LogReader(self.settings)  # feedback lookups and /runs
        self.store = ArtifactStore.from_settings(self.settings)
        self.metrics = serving_metrics()
        self.batch_wait_s = self.settings.ingress_batch_wait_s
        self.batches_running = 0

    async def reconfigure(self, config: dict) -> None:
        live = config.get("live")
        self._retrieve.set_max_batch_size(
            int(config.get("max_batch_size", self.settings.encoder_batch_size))
        )
        self.batch_wait_s = float(
            config.get("batch_wait_timeout_s", self.settings.ingress_batch_wait_s)
        )
        if live == self.live:
            return
        previous, self.live = self.live, live
        if previous:
            self.metrics.live_version.set(0, tags={"version": previous})
        if live:
            self.metrics.live_version.set(1, tags={"version": live})
        log.info("SearchIngress: live version %s -> %s", previous, live)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while any(n for v, n in self.in_flight.items() if v != live):
            if time.monotonic() > deadline:
                log.warning("SearchIngress: old-version requests still running after drain")
                break
            await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ search
    @app.post("/search", response_model=SearchResponse)
    async def search(self, body: SearchRequest) -> SearchResponse:
        started = time.perf_counter()
        query = check_query(body.query, self.settings.max_query_chars)
        if not 1 <= body.k <= self.settings.max_k:
            raise HTTPException(422, f"k must be between 1 and {self.settings.max_k}, not {body.k}")
        mode = body.mode or self.settings.default_mode
        version = self.live
        if version is None:
            raise HTTPException(503, "no model version is loaded yet")
        self.in_flight[version] += 1
        # Read when this search opens a batch: wait for company only if work is in flight.
        self._retrieve.set_batch_wait_timeout_s(self.batch_wait_s if self.batches_running else 0)
        try:
            hits = await self._retrieve((version, query, body.k, mode))
        except Exception as err:  # a replica failed: a server problem, said plainly
            log.exception("search failed")
            raise HTTPException(503, f"search backend unavailable: {type(err).__name__}") from err
        finally:
            self.in_flight[version] -= 1
        search_id = uuid.uuid4()
        results = [
            SearchResult(pid=pid, rank=rank, score=score, text=text)
            for rank, (score, pid, text) in enumerate(hits, 1)
        ]
        latency_ms = (time.perf_counter() - started) * 1000
        self._remember(str(search_id), {r.pid: r.rank for r in results})
        self.log_writer.log_search(
            SearchRecord(
                id=search_id,
                session_id=body.session_id,
                query=query,
                model_version=version,
                mode=mode,
                latency_ms=latency_ms,
                results=[
                    ResultItem(pid=r.pid, rank=r.rank, score=r.score)
                    for r in results
                    if math.isfinite(r.score)
                ],
            )
        )
        return SearchResponse(
            search_id=str(search_id),
            version=version,
            latency_ms=round(latency_ms, 3),
            mode=mode,
            results=results,
        )

    @serve.batch(
        max_batch_size=32, batch_wait_timeout_s=0.0, max_concurrent_batches=CONCURRENT_BATCHES
    )
    async def _retrieve(self, items: list[tuple[str, str, int, str]]) -> list[list[Hit]]:
        """Rank a batch of (version, query, k, mode): one encoder call + one call per shard
        for each version present in the batch."""
        self.metrics.ingress_batch_size.observe(len(items))
        self.batches_running += 1
        try:
            return await self._rank(items)
        finally:
            self.batches_running -= 1

    async def _rank(self, items: list[tuple[str, str, int, str]]) -> list[list[Hit]]:
        by_version: dict[str, list[int]] = defaultdict(list)
        for i, item in enumerate(items):
            by_version[item[0]].append(i)
        out: list[list[Hit]] = [[] for _ in items]
        for version, rows in by_version.items():
            queries = [items[i][1] for i in rows]
            depths = [items[i][2] if items[i][3] == "dense" else max(items[i][2], FUSION_DEPTH)
                      for i in rows]  # fmt: skip
            lexical = [items[i][1] if items[i][3] == "hybrid" else None for i in rows]
            vectors = await self.encoder.encode.remote(version, queries)
            parts = await asyncio.gather(
                *(
                    shard.search.remote(version, vectors, max(depths), lexical)
                    for shard in self.shards
                )
            )
            for j, i in enumerate(rows):
                _, _, k, mode = items[i]
                dense = merge_topk((p[0][j] for p in parts), depths[j])
                if mode == "dense":
                    out[i] = dense[:k]
                else:
                    bm25 = merge_topk((p[1][j] for p in parts), depths[j])
                    out[i] = fuse_hits(dense, bm25, self.settings.hybrid_dense_weight, k)
        return out

    def _remember(self, search_id: str, shown: dict[int, int]) -> None:
        self.recent[search_id] = shown
        while len(self.recent) > RECENT_SEARCHES:
            self.recent.popitem(last=False)

    # ------------------------------------------------------------------ feedback
    @app.post("/feedback")
    async def feedback(self, body: FeedbackRequest) -> dict:
        shown = await self._shown(str(body.search_id))
        if shown is None:
            raise HTTPException(404, f"unknown search_id {body.search_id}")
        if body.pid not in shown:
            raise HTTPException(
                422, f"pid {body.pid} was not among the results of search {body.search_id}"
            )
        self.log_writer.log_feedback(
            FeedbackRecord(
                search_id=body.search_id, pid=body.pid, kind=body.kind, rank=shown[body.pid]
            )
        )
        self.metrics.feedback.inc(1, tags={"kind": body.kind})
        return {"ok": True}

    async def _shown(self, search_id: str) -> dict[int, int] | None:
        """pid -> rank of a search: from memory, else from the log store (which may still be
        writing it, or may be down: then only this replica's recent searches are known)."""
        if search_id in self.recent:
            return self.recent[search_id]
        deadline = time.monotonic() + FEEDBACK_LOOKUP_WAIT_S
        while True:
            try:
                record = await asyncio.to_thread(self.log_reader.get_search, search_id)
            except Exception:  # PostgreSQL unreachable
                log.warning("feedback: log store unreachable for search %s", search_id)
                return None
            if record is not None:
                return {r.pid: r.rank for r in record.results}
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.1)

    # ------------------------------------------------------------------ status
    @app.get("/healthz")
    async def healthz(self) -> dict:
        if self.live is None:
            raise HTTPException(503, "no model version is loaded yet")
        return {"status": "ok", "version": self.live}

    @app.get("/version")
    async def version(self) -> dict:
        if self.live is None:
            raise HTTPException(503, "no model version is loaded yet")
        manifest = await self._manifest(self.live)
        return {
            "version": self.live,
            "created_at": manifest.get("created_at"),
            "parent": manifest.get("parent"),
            "metrics": manifest.get("metrics", {}),
            "shards": len(self.shards),
        }

    async def _manifest(self, version: str) -> dict:
        if version not in self.manifests:  # versions are immutable: cache forever
            manifest = await asyncio.to_thread(self.store.manifest, version)
            self.manifests[version] = manifest.model_dump(exclude={"files"})
        return self.manifests[version]

    @app.get("/versions")
    async def versions(self, limit: int = 20) -> dict:
        if not 1 <= limit <= 200:
            raise HTTPException(422, "limit must be between 1 and 200")
        names = (await asyncio.to_thread(self.store.list_versions))[::-1][:limit]
        rows = []
        for name in names:
            manifest = await self._manifest(name)
            rows.append(
                {
                    "version": name,
                    "live": name == self.live,
                    "created_at": manifest.get("created_at"),
                    "parent": manifest.get("parent"),
                    "metrics": manifest.get("metrics", {}),
                }
            )
        return {"live": self.live, "versions": rows}

    @app.get("/runs")
    async def runs(self, limit: int = 20) -> dict:
        if not 1 <= limit <= 200:
            raise HTTPException(422, "limit must be between 1 and 200")
        try:
            rows = await asyncio.to_thread(self.log_reader.list_runs, limit)
        except Exception as err:
            raise HTTPException(503, f"log store unavailable: {type(err).__name__}") from err
        return jsonable_encoder({"runs": rows})
