"""SearchIngress: the HTTP API (FastAPI through ``@serve.ingress``), see docs/api.md.

A search picks the live version once, on arrival, and that version travels with it to the
encoder and to every shard, so one request is served by one version end to end. Concurrent
searches are batched here (``@serve.batch``): one encoder call and one call per shard carry a
whole batch, which spreads Ray's per-call cost over many requests. A batch waits for more
searches (up to the window) only while another batch is in flight: then company is coming
and larger batches cost less CPU per search; a lone search goes at once. The search is logged
before it is answered: the log writer returns once the record is on disk (fsync'd), and
writes it to PostgreSQL in the background. A query asked before is re-ranked with the clicks
of earlier searchers (the click memory, deployments/click_memory.py, docs/click-memory.md).

Failures are answered, never hung on: a call to the encoder or a shard whose replica died is
retried once (on another replica), every backend, S3 and PostgreSQL call has a time limit,
and whatever is down is named in a 503 (deployments/errors.py, deployments/dependencies.py).
Bodies, JSON shape and feedback rates are limited here too (deployments/limits.py).

``user_config`` = ``{"live": version, "max_batch_size": n, "batch_wait_timeout_s": s,
"feedback_client_rate_per_s", "feedback_client_burst", "feedback_session_rate_per_s",
"feedback_session_burst"}``. Switching ``live`` returns only when no request of another
version is still in flight here, which is what lets a rollout unload the old version right
after (docs/serving.md).

No ``from __future__ import annotations`` here: FastAPI must see the request models as real
classes, not strings, when Serve wraps the methods into routes.
"""

import asyncio
import logging
import math
import time
import uuid
from collections import Counter, OrderedDict, defaultdict
from typing import Any, NamedTuple

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.handle import DeploymentHandle

from cluster.artifacts import ArtifactStore
from cluster.config import get_settings
from cluster.corpora.document_log import DocumentLog
from cluster.corpora.documents import SHIPPED_CORPUS
from cluster.logstore import FeedbackRecord, LogReader, LogWriter, ResultItem, SearchRecord
from cluster.logstore.records import client_id
from cluster.metrics import serving_metrics
from cluster.ray_connection import keep_replica_grpc_on_loopback
from deployments.api_models import (
    ERROR_RESPONSES,
    MAX_LIMIT,
    SEARCH_RESPONSES,
    WHITESPACE,
    ClickMemoryStatus,
    DocumentDeleted,
    DocumentOut,
    DocumentsRequest,
    DocumentsWritten,
    FeedbackRequest,
    FeedbackResponse,
    HealthResponse,
    RunsResponse,
    SearchRequest,
    SearchResponse,
    SearchResult,
    VersionResponse,
    VersionsResponse,
)
from deployments.click_memory import ClickMemory
from deployments.dependencies import (
    POSTGRES,
    POSTGRES_FAILURES,
    S3,
    S3_FAILURES,
    Service,
    fast_artifact_store,
)
from deployments.documents import Tokens, to_documents
from deployments.errors import ServiceUnavailable, install_error_handlers
from deployments.limits import BodyGuard, TokenBuckets, client_key
from deployments.merge import Hit, fuse_hits, merge_topk
from training.fusion import FUSION_DEPTH

log = logging.getLogger("ray.serve")

CONCURRENT_BATCHES = 4  # batches in flight per ingress replica: encode one while another searches
RECENT_SEARCHES = 50_000  # search_id -> shown doc_ids kept in memory for instant feedback checks
FEEDBACK_LOOKUP_WAIT_S = 1.0  # a search may still sit in the log store's write queue
DRAIN_TIMEOUT_S = 60.0
BACKEND = "search backend"
ROUTES = {
    "/search", "/feedback", "/documents", "/healthz", "/version", "/versions", "/runs",
    "/click-memory",
}  # fmt: skip

_settings = get_settings()
app = FastAPI(
    title="Two-Tower Search API",
    description="Semantic search over MS MARCO passages with a two-tower model. Every error "
    'is {"detail": "<one sentence>"}.',
    version="1.0",
)
install_error_handlers(app)


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


app.add_middleware(
    BodyGuard,
    max_bytes=_settings.max_body_bytes,
    max_depth=_settings.max_json_depth,
    max_number_chars=_settings.max_json_number_chars,
    larger={"/documents": _settings.documents_max_body_bytes},
)
app.add_middleware(MetricsMiddleware)  # outermost: it also counts what BodyGuard refuses


def check_query(query: str, max_chars: int) -> str:
    """The query to search for, or an HTTP 422 that says what is wrong with it."""
    if any("\ud800" <= ch <= "\udfff" for ch in query):
        raise HTTPException(422, "query is not valid UTF-8 text (it holds lone surrogates)")
    if len(query) > max_chars:
        raise HTTPException(
            422, f"query has {len(query)} characters; the limit is {max_chars} (nothing is cut)"
        )
    stripped = query.strip(WHITESPACE)  # the schema's pattern: one character outside these
    if not stripped:
        raise HTTPException(422, "query is empty: type some words to search for")
    return stripped


async def call_backend(method, *args: Any, timeout_s: float) -> Any:
    """``method.remote(*args)`` on a deployment within ``timeout_s``, made once more if the
    replica that took it died.

    A killed replica surfaces as a RayActorError: ActorDiedError once Ray knows, or
    ActorUnavailableError when the connection broke mid-call (ray/serve/_private/
    replica_result.py). Serve's router has then taken that replica out of its choices
    (router.py, ``_process_finished_request``), so the retry goes to another replica.
    """
    try:
        return await asyncio.wait_for(method.remote(*args), timeout_s)
    except RayActorError as err:
        log.warning("a replica failed (%s); calling another once", type(err).__name__)
        return await asyncio.wait_for(method.remote(*args), timeout_s)


class Shown(NamedTuple):
    """What a search showed: its session (None without one) and doc_id -> rank."""

    session_id: str | None
    ranks: dict[str, int]


@serve.deployment(name="SearchIngress")
@serve.ingress(app)
class SearchIngress:
    def __init__(self, encoder: DeploymentHandle, shards: list[DeploymentHandle]) -> None:
        keep_replica_grpc_on_loopback()
        self.settings = get_settings()
        self.encoder = encoder
        self.shards = shards
        self.live: str | None = None
        self.in_flight: Counter[str] = Counter()
        self.recent: OrderedDict[str, Shown] = OrderedDict()
        self.manifests: dict[str, dict] = {}
        self.log_writer = LogWriter(self.settings)  # searches and feedback, on disk before answered
        self.log_reader = LogReader(self.settings)  # feedback lookups and /runs
        self.documents = DocumentLog(self.settings)  # documents written through the API
        self.click_memory = ClickMemory(self.settings)  # clicks of earlier searches, in ranking
        self.tokens = Tokens(self.settings)
        self.store: ArtifactStore | None = None  # made on first use: S3 may be down now
        timeout = self.settings.dependency_timeout_s
        self.s3 = Service(S3, timeout, S3_FAILURES)
        self.postgres = Service(POSTGRES, timeout, POSTGRES_FAILURES)
        self.client_limit = TokenBuckets(
            self.settings.feedback_client_rate_per_s, self.settings.feedback_client_burst
        )
        self.session_limit = TokenBuckets(
            self.settings.feedback_session_rate_per_s, self.settings.feedback_session_burst
        )
        self.metrics = serving_metrics()
        self.batch_wait_s = self.settings.ingress_batch_wait_s
        self.batches_running = 0

    async def reconfigure(self, config: dict) -> None:
        settings = self.settings
        self._retrieve.set_max_batch_size(
            int(config.get("max_batch_size", settings.encoder_batch_size))
        )
        self.batch_wait_s = float(config.get("batch_wait_timeout_s", settings.ingress_batch_wait_s))
        self.client_limit.configure(
            float(config.get("feedback_client_rate_per_s", settings.feedback_client_rate_per_s)),
            int(config.get("feedback_client_burst", settings.feedback_client_burst)),
        )
        self.session_limit.configure(
            float(config.get("feedback_session_rate_per_s", settings.feedback_session_rate_per_s)),
            int(config.get("feedback_session_burst", settings.feedback_session_burst)),
        )
        self.click_memory.start()
        await self._switch_live(config.get("live"))

    async def _switch_live(self, live: str | None) -> None:
        """Serve ``live`` from now on; return once no request of another version runs here."""
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
    @app.post(
        "/search", response_model=SearchResponse, responses=SEARCH_RESPONSES, operation_id="search"
    )
    async def search(self, body: SearchRequest, request: Request) -> SearchResponse:
        self.tokens.require_read(request)
        started = time.perf_counter()
        query = check_query(body.query, self.settings.max_query_chars)
        mode = body.mode or self.settings.default_mode
        version = self.live
        if version is None:
            raise HTTPException(503, "no model version is loaded yet")
        prior = self.click_memory.prior(query)
        hits = await self._search_batched(
            version, query, self.click_memory.depth(body.k, prior), mode
        )
        ranked, memory_moved = self.click_memory.rank(hits, prior, body.k)
        search_id = str(uuid.uuid4())
        results = [
            SearchResult(doc_id=r.doc_id, rank=rank, score=r.score, text=r.text, memory=r.memory)
            for rank, r in enumerate(ranked, 1)
        ]
        latency_ms = (time.perf_counter() - started) * 1000
        self._remember(search_id, Shown(body.session_id, {r.doc_id: r.rank for r in results}))
        client = client_id(client_key(request.scope, self.settings.client_ip_header))
        record = self._search_record(
            search_id, body.session_id, client, query, version, mode, latency_ms, results
        )
        # On disk (fsync'd) before the answer, off the event loop so other requests go on.
        await asyncio.to_thread(self.log_writer.log_search, record)
        return SearchResponse(
            search_id=search_id,
            version=version,
            latency_ms=round(latency_ms, 3),
            mode=mode,
            results=results,
            click_memory_moved=memory_moved,
        )

    async def _search_batched(self, version: str, query: str, k: int, mode: str) -> list[Hit]:
        self.in_flight[version] += 1
        # Read when this search opens a batch: wait for company only if work is in flight.
        self._retrieve.set_batch_wait_timeout_s(self.batch_wait_s if self.batches_running else 0)
        try:
            return await self._retrieve((version, query, k, mode))
        except TimeoutError:
            limit = self.settings.backend_timeout_s
            raise ServiceUnavailable(BACKEND, f"no answer within {limit:g} s") from None
        except Exception as err:  # a replica failed twice, or none is running
            log.exception("search failed")
            raise ServiceUnavailable(BACKEND, type(err).__name__) from err
        finally:
            self.in_flight[version] -= 1

    @staticmethod
    def _search_record(search_id, session_id, client, query, version, mode, latency_ms, results):
        items = [
            ResultItem(doc_id=r.doc_id, rank=r.rank, score=r.score)
            for r in results
            if math.isfinite(r.score)
        ]
        return SearchRecord(
            id=uuid.UUID(search_id),
            session_id=session_id,
            client=client,
            query=query,
            model_version=version,
            mode=mode,
            latency_ms=latency_ms,
            results=items,
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
            ranked = await self._rank_version(version, [items[i][1:] for i in rows])
            for i, hits in zip(rows, ranked, strict=True):
                out[i] = hits
        return out

    async def _rank_version(
        self, version: str, items: list[tuple[str, int, str]]
    ) -> list[list[Hit]]:
        """Rank (query, k, mode) items of one version: one encoder call, one call per shard."""
        timeout = self.settings.backend_timeout_s
        queries = [query for query, _, _ in items]
        depths = [k if mode == "dense" else max(k, FUSION_DEPTH) for _, k, mode in items]
        lexical = [query if mode == "hybrid" else None for query, _, mode in items]
        vectors = await call_backend(self.encoder.encode, version, queries, timeout_s=timeout)
        parts = await asyncio.gather(
            *(
                call_backend(
                    shard.search, version, vectors, max(depths), lexical, timeout_s=timeout
                )
                for shard in self.shards
            )
        )
        out = []
        for j, (_, k, mode) in enumerate(items):
            dense = merge_topk((p[0][j] for p in parts), depths[j])
            if mode == "dense":
                out.append(dense[:k])
            else:
                bm25 = merge_topk((p[1][j] for p in parts), depths[j])
                out.append(fuse_hits(dense, bm25, self.settings.hybrid_dense_weight, k))
        return out

    def _remember(self, search_id: str, shown: Shown) -> None:
        self.recent[search_id] = shown
        while len(self.recent) > RECENT_SEARCHES:
            self.recent.popitem(last=False)

    # ------------------------------------------------------------------ feedback
    @app.post(
        "/feedback",
        response_model=FeedbackResponse,
        responses=ERROR_RESPONSES,
        operation_id="feedback",
    )
    async def feedback(self, body: FeedbackRequest, request: Request) -> FeedbackResponse:
        self.tokens.require_read(request)
        client = client_key(request.scope, self.settings.client_ip_header)
        if not self.client_limit.allow(client):
            raise self._too_much("this client", self.client_limit)
        shown = await self._shown(str(body.search_id))
        if shown is None:
            raise HTTPException(404, f"unknown search_id {body.search_id}")
        if body.doc_id not in shown.ranks:  # a result that does not exist, like an unknown search
            self.click_memory.refused()
            raise HTTPException(
                404, f"doc_id {body.doc_id!r} was not among the results of search {body.search_id}"
            )
        if not self.session_limit.allow(shown.session_id or str(body.search_id)):
            raise self._too_much("this session", self.session_limit)
        record = FeedbackRecord(
            search_id=body.search_id,
            doc_id=body.doc_id,
            kind=body.kind,
            rank=shown.ranks[body.doc_id],
        )
        await asyncio.to_thread(self.log_writer.log_feedback, record)
        self.metrics.feedback.inc(1, tags={"kind": body.kind})
        return FeedbackResponse(ok=True)

    @staticmethod
    def _too_much(who: str, limit: TokenBuckets) -> HTTPException:
        return HTTPException(
            429,
            f"too much feedback from {who}: at most {limit.rate:g} events a second "
            f"(bursts of {limit.burst}); try again in a moment",
            headers={"Retry-After": str(max(1, math.ceil(1 / max(limit.rate, 1e-9))))},
        )

    async def _shown(self, search_id: str) -> Shown | None:
        """What a search showed: from memory, else from the log store, which may still be
        writing it (so ask again for a moment). PostgreSQL down: ServiceUnavailable (503)."""
        if search_id in self.recent:
            return self.recent[search_id]
        deadline = time.monotonic() + FEEDBACK_LOOKUP_WAIT_S
        while True:
            record = await self.postgres.call(self.log_reader.get_search, search_id)
            if record is not None:
                return Shown(record.session_id, {r.doc_id: r.rank for r in record.results})
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.1)

    # ------------------------------------------------------------------ documents
    @app.put(
        "/documents",
        response_model=DocumentsWritten,
        responses=ERROR_RESPONSES,
        operation_id="put_documents",
    )
    async def put_documents(self, body: DocumentsRequest, request: Request) -> DocumentsWritten:
        """Upsert a batch into the live corpus: durable once answered, searchable within
        seconds on every shard replica."""
        self.tokens.require_write(request)
        documents = to_documents(body.documents, self.settings)
        corpus = await self._live_corpus()
        version, vectors = self.live, None
        try:  # encoded once here, so no shard replica of the live version encodes them again
            vectors = await call_backend(
                self.encoder.encode_passages, version, [d.passage for d in documents],
                timeout_s=self.settings.backend_timeout_s,
            )  # fmt: skip
        except Exception as err:  # the replicas encode them instead: slower, as correct
            log.warning("could not encode %d written documents (%s)", len(documents), err)
        seq = await self.postgres.call(
            self.documents.write, corpus, documents, [], vectors, version
        )
        self.metrics.documents_written.inc(len(documents), tags={"op": "upsert"})
        return DocumentsWritten(corpus=corpus, written=len(documents), seq=seq)

    @app.delete(
        "/documents/{doc_id:path}",
        response_model=DocumentDeleted,
        responses=ERROR_RESPONSES,
        operation_id="delete_document",
    )
    async def delete_document(self, doc_id: str, request: Request) -> DocumentDeleted:
        self.tokens.require_write(request)
        corpus, _ = await self._existing(doc_id)
        seq = await self.postgres.call(self.documents.write, corpus, [], [doc_id])
        self.metrics.documents_written.inc(1, tags={"op": "delete"})
        return DocumentDeleted(corpus=corpus, deleted=doc_id, seq=seq)

    @app.get(
        "/documents/{doc_id:path}",
        response_model=DocumentOut,
        responses=ERROR_RESPONSES,
        operation_id="get_document",
    )
    async def get_document(self, doc_id: str, request: Request) -> DocumentOut:
        self.tokens.require_read(request)
        _, document = await self._existing(doc_id)
        return document

    async def _existing(self, doc_id: str) -> tuple[str, DocumentOut]:
        """(the live corpus, the document as it stands there), or a 404."""
        corpus = await self._live_corpus()
        document = await self._find(corpus, doc_id)
        if document is None:
            raise HTTPException(404, f"no document {doc_id!r} in corpus {corpus!r}")
        return corpus, document

    async def _live_corpus(self) -> str:
        live = self.live
        if live is None:
            raise HTTPException(503, "no model version is loaded yet")
        corpus = (await self._manifest(live)).get("corpus") or {}
        return corpus.get("name", SHIPPED_CORPUS)

    async def _find(self, corpus: str, doc_id: str) -> DocumentOut | None:
        """A document as it stands: its last write through the API, else the live version's
        copy (None: unknown, or deleted)."""
        last = await self.postgres.call(self.documents.latest, corpus, doc_id)
        if last is not None:
            doc = last.document
            if doc is None:
                return None
            return DocumentOut(
                id=doc.id, text=doc.passage, title=doc.title, url=doc.url,
                metadata=doc.metadata, source="api",
            )  # fmt: skip
        timeout = self.settings.backend_timeout_s
        try:
            texts = await asyncio.gather(
                *(call_backend(s.get, self.live, doc_id, timeout_s=timeout) for s in self.shards)
            )
        except Exception as err:  # a shard failed twice, or none is running: as a search would
            raise ServiceUnavailable(BACKEND, type(err).__name__) from err
        text = next((t for t in texts if t is not None), None)
        return None if text is None else DocumentOut(id=doc_id, text=text, source="corpus")

    # ------------------------------------------------------------------ status
    @app.get("/healthz", response_model=HealthResponse, responses=ERROR_RESPONSES)
    async def healthz(self) -> HealthResponse:
        if self.live is None:
            raise HTTPException(503, "no model version is loaded yet")
        return HealthResponse(status="ok", version=self.live)

    @app.get("/version", response_model=VersionResponse, responses=ERROR_RESPONSES)
    async def version(self) -> VersionResponse:
        live = self.live
        if live is None:
            raise HTTPException(503, "no model version is loaded yet")
        manifest = await self._manifest(live)
        return VersionResponse(
            version=live,
            created_at=manifest.get("created_at"),
            parent=manifest.get("parent"),
            metrics=manifest.get("metrics", {}),
            shards=len(self.shards),
            corpus=manifest.get("corpus"),
        )

    def _artifacts(self) -> ArtifactStore:
        """The store, made on first use (on an S3 worker thread: it checks the bucket)."""
        if self.store is None:
            self.store = fast_artifact_store(self.settings)
        return self.store

    async def _manifest(self, version: str) -> dict:
        if version not in self.manifests:  # versions are immutable: cache forever
            manifest = await self.s3.call(lambda: self._artifacts().manifest(version))
            self.manifests[version] = manifest.model_dump(exclude={"files"})
        return self.manifests[version]

    @app.get("/versions", response_model=VersionsResponse, responses=ERROR_RESPONSES)
    async def versions(
        self, limit: int = Query(20, ge=1, le=MAX_LIMIT, description="How many, newest first.")
    ) -> VersionsResponse:
        names = (await self.s3.call(lambda: self._artifacts().list_versions()))[::-1][:limit]
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
        return VersionsResponse.model_validate({"live": self.live, "versions": rows})

    @app.get("/runs", response_model=RunsResponse, responses=ERROR_RESPONSES)
    async def runs(
        self, limit: int = Query(20, ge=1, le=MAX_LIMIT, description="How many, newest first.")
    ) -> RunsResponse:
        rows = await self.postgres.call(self.log_reader.list_runs, limit)
        return RunsResponse.model_validate(jsonable_encoder({"runs": rows}))

    @app.get("/click-memory", response_model=ClickMemoryStatus, responses=ERROR_RESPONSES)
    async def click_memory_status(self) -> ClickMemoryStatus:
        """What the click memory holds and what it ignored, as this replica sees it."""
        return ClickMemoryStatus.model_validate(self.click_memory.status())
