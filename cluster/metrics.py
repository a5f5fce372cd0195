"""The application's metric definitions: one place for every name Prometheus and Grafana see.

Metrics go through Ray's metrics pipeline (``ray.util.metrics``), so each Ray node exports them
on ``metrics_port`` next to Ray's and Ray Serve's own metrics, and Prometheus finds every node
through Ray's service discovery file. Ray prefixes every name with ``ray_``; counters are named
with ``_total`` so Ray exports them once, as a Prometheus counter.

Serving (recorded by deployments/):

==========================================  =========  =====================================
exported name                               type       labels / meaning
==========================================  =========  =====================================
ray_twotower_request_latency_ms             histogram  route, status (HTTP status code); time
                                                       inside the ingress. Its ``_count`` is
                                                       the request counter (one record per
                                                       request: each costs ~40 µs of the
                                                       ingress's event loop)
ray_twotower_encoder_batch_size             histogram  queries per QueryEncoder forward pass
ray_twotower_ingress_batch_size             histogram  queries per ingress → shards fan-out
ray_twotower_shard_search_latency_ms        histogram  shard; Faiss (+ BM25) time per batch
ray_twotower_index_size                     gauge      shard, version; passages loaded
ray_twotower_live_version_info              gauge      version; 1 for the live version, else 0
ray_twotower_feedback_total                 counter    kind (click | relevant | not_relevant)
==========================================  =========  =====================================

Learning loop (recorded by learning through :func:`loop_metrics`):

==================================================  =========  =============================
ray_twotower_loop_runs_total                        counter    outcome (published | rejected
                                                               | skipped | failed)
ray_twotower_loop_run_duration_seconds              histogram  outcome
ray_twotower_loop_last_success_timestamp_seconds    gauge      unix time of the last run
                                                               that finished without error
ray_twotower_live_version_metric                    gauge      version, metric (e.g.
                                                               ``dev.mrr@10``); the live
                                                               version's evaluation numbers
==================================================  =========  =============================

Log store (recorded by every ``LogWriter``, cluster/logstore/writer.py, through
:func:`logstore_metrics`; each process exports its own series):

==================================================  =========  =============================
ray_twotower_log_buffered_records                   gauge      records this process logged
                                                               (acknowledged) that are not
                                                               in PostgreSQL yet
ray_twotower_log_buffer_bytes                       gauge      bytes in the buffer folder
                                                               (every writer's; the cap is
                                                               ``log_buffer_max_bytes``)
ray_twotower_log_dropped_total                      counter    records not stored: the
                                                               buffer was full (or its disk
                                                               failed)
ray_twotower_log_rejected_total                     counter    records PostgreSQL refused,
                                                               set aside in rejected.jsonl
ray_twotower_log_retried_total                      counter    feedback written after
                                                               waiting for its search
==================================================  =========  =============================

Click memory (recorded by each ingress replica, deployments/click_memory.py, through
:func:`click_memory_metrics`; docs/click-memory.md):

==================================================  =========  =============================
ray_twotower_click_memory_queries                   gauge      queries the memory can move
                                                               now (each replica's copy)
ray_twotower_click_memory_folded_total              counter    feedback events folded into
                                                               the memory (by whichever
                                                               replica folded them)
ray_twotower_click_memory_ignored_total             counter    reason: capped (the session
                                                               had given its cap), client
                                                               (the client had given its
                                                               sessions), unshown (the
                                                               search did not show it),
                                                               refused (the API refused a
                                                               click on an unshown result)
ray_twotower_click_memory_moved_total               counter    searches whose results the
                                                               memory reordered
==================================================  =========  =============================

Metric objects are created lazily, once per process, by :func:`serving_metrics`,
:func:`loop_metrics`, :func:`logstore_metrics` and :func:`click_memory_metrics`: a Ray metric
belongs to the worker process that records it (outside Ray, recording does nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ray.util.metrics import Counter, Gauge, Histogram

LATENCY_BOUNDARIES_MS = [1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000]
BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128]
RUN_BOUNDARIES_S = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600]


@dataclass(frozen=True)
class ServingMetrics:
    request_latency_ms: Histogram
    encoder_batch_size: Histogram
    ingress_batch_size: Histogram
    shard_search_latency_ms: Histogram
    index_size: Gauge
    live_version: Gauge
    feedback: Counter
    documents_written: Counter
    documents_applied_lag_s: Histogram


@dataclass(frozen=True)
class LoopMetrics:
    runs: Counter
    run_duration_s: Histogram
    last_success_ts: Gauge
    live_version_metric: Gauge


@dataclass(frozen=True)
class LogStoreMetrics:
    buffered: Gauge
    buffer_bytes: Gauge
    dropped: Counter
    rejected: Counter
    retried: Counter


@dataclass(frozen=True)
class ClickMemoryMetrics:
    queries: Gauge
    folded: Counter
    ignored: Counter
    moved: Counter


@lru_cache(maxsize=1)
def serving_metrics() -> ServingMetrics:
    return ServingMetrics(
        request_latency_ms=Histogram(
            "twotower_request_latency_ms",
            description="Requests answered by the search API: time inside the ingress, in ms.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("route", "status"),
        ),
        encoder_batch_size=Histogram(
            "twotower_encoder_batch_size",
            description="Queries per QueryEncoder forward pass.",
            boundaries=BATCH_BOUNDARIES,
        ),
        ingress_batch_size=Histogram(
            "twotower_ingress_batch_size",
            description="Queries per fan-out from the ingress to the encoder and shards.",
            boundaries=BATCH_BOUNDARIES,
        ),
        shard_search_latency_ms=Histogram(
            "twotower_shard_search_latency_ms",
            description="Time an IndexShard spends searching one batch, in ms.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("shard",),
        ),
        index_size=Gauge(
            "twotower_index_size",
            description="Passages held by a shard replica, per loaded version.",
            tag_keys=("shard", "version"),
        ),
        live_version=Gauge(
            "twotower_live_version_info",
            description="1 for the model version the ingress serves, 0 for versions it left.",
            tag_keys=("version",),
        ),
        feedback=Counter(
            "twotower_feedback_total",
            description="Feedback events accepted by the API.",
            tag_keys=("kind",),
        ),
        documents_written=Counter(
            "twotower_documents_written_total",
            description="Documents upserted or deleted through the API (acknowledged).",
            tag_keys=("op",),
        ),
        documents_applied_lag_s=Histogram(
            "twotower_documents_applied_lag_seconds",
            description="From a document write's commit to a shard replica applying it, in s.",
            boundaries=[0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30],
            tag_keys=("shard",),
        ),
    )


@lru_cache(maxsize=1)
def loop_metrics() -> LoopMetrics:
    return LoopMetrics(
        runs=Counter(
            "twotower_loop_runs_total",
            description="Learning-loop runs by outcome.",
            tag_keys=("outcome",),
        ),
        run_duration_s=Histogram(
            "twotower_loop_run_duration_seconds",
            description="Wall time of a learning-loop run, in seconds.",
            boundaries=RUN_BOUNDARIES_S,
            tag_keys=("outcome",),
        ),
        last_success_ts=Gauge(
            "twotower_loop_last_success_timestamp_seconds",
            description="Unix time at which the last successful learning-loop run finished.",
        ),
        live_version_metric=Gauge(
            "twotower_live_version_metric",
            description="Evaluation metrics of the live version (from its metrics.json).",
            tag_keys=("version", "metric"),
        ),
    )


@lru_cache(maxsize=1)
def logstore_metrics() -> LogStoreMetrics:
    return LogStoreMetrics(
        buffered=Gauge(
            "twotower_log_buffered_records",
            description="Logged searches and feedback of this process not in PostgreSQL yet.",
        ),
        buffer_bytes=Gauge(
            "twotower_log_buffer_bytes",
            description="Bytes held in the log buffer folder (all writers sharing it).",
        ),
        dropped=Counter(
            "twotower_log_dropped_total",
            description="Log records dropped: the disk buffer was full or its disk failed.",
        ),
        rejected=Counter(
            "twotower_log_rejected_total",
            description="Log records PostgreSQL refused (kept in rejected.jsonl).",
        ),
        retried=Counter(
            "twotower_log_retried_total",
            description="Feedback records written after waiting for their search to land.",
        ),
    )


@lru_cache(maxsize=1)
def click_memory_metrics() -> ClickMemoryMetrics:
    return ClickMemoryMetrics(
        queries=Gauge(
            "twotower_click_memory_queries",
            description="Queries whose ranking the click memory can move now (this replica).",
        ),
        folded=Counter(
            "twotower_click_memory_folded_total",
            description="Feedback events folded into the click memory.",
        ),
        ignored=Counter(
            "twotower_click_memory_ignored_total",
            description="Clicks and marks the click memory did not count, by reason.",
            tag_keys=("reason",),
        ),
        moved=Counter(
            "twotower_click_memory_moved_total",
            description="Searches whose results the click memory reordered.",
        ),
    )
