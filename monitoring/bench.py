"""`twotower bench`: how fast the served app is, next to what the same code does in-process.

Three parts, each bounded in request count and time:

1. **Served.** A closed-loop load generator (aiohttp, keep-alive) posts real dev/test queries to
   ``POST /search`` on loopback at each concurrency level and reports QPS, p50/p95/p99 and
   errors. It runs in a child process at nice 19, below Ray's workers (nice 15), so it never
   starves the replicas it measures.
2. **In-process bound.** The live version's QueryEncoder and IndexShard search code (the very
   classes the replicas run) called directly, batched like the app batches (up to
   ``encoder_batch_size`` queries per pass), one thread per core, at Ray's worker priority.
   The ratio served ÷ in-process says what HTTP + Ray cost.
   Next to it, the **HTTP floor**: the same load generator on ``GET /healthz``, a route that
   searches nothing, at the highest level. It is the most any route of the app can serve on
   this machine, so it splits the gap into Serve's HTTP path and the search pipeline.
   Every level also reports the machine's idle and steal share while it ran and the CPU time
   the whole machine spent per request (``/proc/stat``: app, load generator, idle services
   and kernel alike): on a shared virtual machine, time the hypervisor gives to other guests
   (steal) moves every number here, so a run says how much it had.
3. **Scale.** A synthetic, clustered corpus of 1,000,000 vectors over 4 IVF shards (Faiss
   IndexIVFFlat, inner product, one OpenMP thread): p50/p99 latency of one query over all
   shards, and recall@10 against exact search.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import faiss
import httpx
import numpy as np
import psutil
import torch
from rich.console import Console
from rich.table import Table

from cluster.artifacts import ArtifactStore
from cluster.config import REPO_ROOT, Settings
from cluster.ray_connection import connect
from deployments.app import APP_NAME, INGRESS
from deployments.merge import merge_topk
from deployments.serve_control import serve_details
from deployments.shard import LoadedShard
from training.index import read_index_meta
from training.model import QueryEncoder

QUERY_FILES = ("queries.dev.tsv.gz", "queries.test.tsv.gz", "queries.dl19.tsv.gz")
DATA_DIR = REPO_ROOT / "training" / "data" / "msmarco"
LOADGEN_NICE = 19  # below every replica: the generator must not starve what it measures
RAY_WORKER_NICE = 15  # Ray's default niceness for its workers, so for every Serve replica
WARMUP_REQUESTS = 500  # per level, at its concurrency, before the measured requests
WARMUP_MAX_S = 10.0


@dataclass
class Level:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    qps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    idle_pct: float | None = None  # the machine's CPU share that sat idle during the level
    steal_pct: float | None = None  # ... and that the hypervisor gave to other guests
    cpu_ms: float | None = None  # CPU time of the whole machine per answered request


class MachineShare:
    """Idle and steal shares of all CPUs between ``start()`` and ``stop()``, and the CPU time
    the whole machine spent (every process: app, load generator, idle services, kernel), from
    Linux's /proc/stat."""

    def __init__(self) -> None:
        self.first: list[int] | None = None
        self.idle_pct: float | None = None
        self.steal_pct: float | None = None
        self.busy_s: float | None = None

    @staticmethod
    def _read() -> list[int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as handle:
                return [int(x) for x in handle.readline().split()[1:9]]
        except (OSError, ValueError):  # not Linux: the level reports no share
            return None

    def start(self) -> None:
        self.first = self._read()

    def stop(self) -> None:
        last = self._read()
        if self.first is None or last is None:
            return
        # user nice system idle iowait irq softirq steal
        delta = [b - a for a, b in zip(self.first, last, strict=True)]
        total = sum(delta)
        if total > 0:
            self.idle_pct = round(100 * (delta[3] + delta[4]) / total, 1)
            self.steal_pct = round(100 * delta[7] / total, 1)
            self.busy_s = (total - delta[3] - delta[4] - delta[7]) / os.sysconf("SC_CLK_TCK")


def load_queries() -> list[str]:
    queries = []
    for name in QUERY_FILES:
        with gzip.open(DATA_DIR / name, "rt", encoding="utf-8") as handle:
            queries += [line.rstrip("\n").split("\t", 1)[1] for line in handle if "\t" in line]
    return queries


def summarise(
    concurrency: int,
    latencies_s: list[float],
    errors: int,
    seconds: float,
    share: MachineShare | None = None,
) -> Level:
    ms = np.array(latencies_s or [math.nan]) * 1000
    done = len(latencies_s)
    busy_s = share.busy_s if share else None
    return Level(
        concurrency,
        done + errors,
        errors,
        round(seconds, 2),
        round(done / seconds, 1) if seconds else 0.0,
        *(round(float(np.percentile(ms, p)), 1) for p in (50, 95, 99)),
        share.idle_pct if share else None,
        share.steal_pct if share else None,
        round(busy_s / done * 1000, 2) if busy_s is not None and done else None,
    )


# ---------------------------------------------------------------------- served (child process)
async def _closed_loop(url: str, concurrency: int, total: int, max_s: float) -> Level:
    """``POST {query}`` to a ``/search`` URL, else ``GET`` (the HTTP floor's ``/healthz``)."""
    queries = load_queries()
    search = url.rstrip("/").endswith("/search")
    latencies: list[float] = []
    errors = 0
    issued = 0
    share = MachineShare()
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(query: str) -> bool:
            started = time.perf_counter()
            try:
                if search:
                    request = session.post(url, json={"query": query, "mode": "dense"})
                else:
                    request = session.get(url)
                async with request as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            return ok

        async def client(limit: int, deadline: float) -> None:
            nonlocal issued, errors
            while issued < limit and time.perf_counter() < deadline:
                query = queries[issued % len(queries)]
                issued += 1
                if not await one(query):
                    errors += 1

        # Warm-up at this level's concurrency: its latencies are not counted (its errors are).
        # Fresh replicas answer their first seconds of load more slowly, which made single
        # runs look worse or better depending on what ran before (docs/results/serving.md,
        # "One window, a warm-up, and the spread of many runs").
        warmup = min(WARMUP_REQUESTS, total)
        await asyncio.gather(
            *(client(warmup, time.perf_counter() + WARMUP_MAX_S) for _ in range(concurrency))
        )
        latencies.clear()

        share.start()
        started = time.perf_counter()
        limit = issued + total
        await asyncio.gather(*(client(limit, started + max_s) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        share.stop()
    return summarise(concurrency, latencies, errors, seconds, share)


def served_level(
    base_url: str, concurrency: int, total: int, max_s: float, route: str = "/search"
) -> Level:
    """One level against ``route``, measured by a child process at nice 19."""
    args = [sys.executable, "-m", "monitoring.bench", "--loadgen", f"{base_url}{route}"]
    args += [str(concurrency), str(total), str(max_s)]
    result = subprocess.run(
        args,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=max_s + 120,
        preexec_fn=lambda: os.nice(LOADGEN_NICE),
    )
    if result.returncode != 0:
        raise RuntimeError(f"load generator failed: {result.stderr[-2000:]}")
    return Level(**json.loads(result.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------------- in-process bound
def inprocess_levels(
    version_dir: Path, levels: list[int], total: int, max_s: float, batch_size: int
) -> list[Level]:
    """The app's own encoder + shard code, no HTTP, no Ray, one thread per core."""
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    encoder = QueryEncoder.load(version_dir)
    shards = [
        LoadedShard.load(version_dir, i) for i in range(read_index_meta(version_dir)["num_shards"])
    ]
    queries = load_queries()
    return [_inprocess_level(encoder, shards, queries, c, total, max_s, batch_size) for c in levels]


def _inprocess_level(encoder, shards, queries, concurrency, total, max_s, batch_size) -> Level:

    threads = min(os.cpu_count() or 1, concurrency)
    batch = min(batch_size, math.ceil(concurrency / threads))
    latencies: list[float] = []
    issued = 0
    lock = threading.Lock()
    deadline = time.perf_counter() + max_s

    def worker() -> None:
        nonlocal issued
        while time.perf_counter() < deadline:
            with lock:
                start = issued
                if start >= total:
                    return
                issued += batch
            texts = [queries[(start + j) % len(queries)] for j in range(batch)]
            began = time.perf_counter()
            vectors = encoder.encode(texts)
            parts = [s.dense(vectors, 10) for s in shards]
            for j in range(len(texts)):
                merge_topk((p[j] for p in parts), 10)
            took = time.perf_counter() - began
            with lock:
                latencies.extend([took] * len(texts))

    share = MachineShare()
    share.start()
    began = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    seconds = time.perf_counter() - began
    share.stop()
    return summarise(concurrency, latencies, 0, seconds, share)


# ---------------------------------------------------------------------- scale variant
@dataclass
class ScaleResult:
    passages: int
    shards: int
    dim: int
    nlist: int
    nprobe: int
    build_s: float
    p50_ms: float
    p99_ms: float
    recall_at_10: float


def synthetic_corpus(n: int, dim: int, clusters: int, seed: int, spread: float = 1.0) -> np.ndarray:
    """Unit vectors around random centres: clustered like real embeddings, not uniform noise.

    ``spread`` 1.0 puts a point as far from its centre as the centre is from the origin, so two
    passages of one cluster have cosine ≈ 0.5: loose topics, not tight blobs (which would make
    IVF look better than it is)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for start in range(0, n, step):
        rows = min(step, n - start)
        chunk = centres[rng.integers(0, clusters, rows)]
        chunk += spread * rng.standard_normal((rows, dim)).astype(np.float32)
        out[start : start + rows] = chunk
    faiss_normalise(out)
    return out


def faiss_normalise(x: np.ndarray) -> None:

    faiss.normalize_L2(x)


def scale_test(
    passages: int = 1_000_000,
    shards: int = 4,
    dim: int = 128,
    nlist: int = 1024,
    nprobe: int = 32,
    queries: int = 300,
    seed: int = 7,
) -> ScaleResult:
    """Sharded IVF search over a synthetic corpus of ``passages``: latency on one thread, as a
    serving replica runs, and recall@10 against exact search."""
    faiss.omp_set_num_threads(1)
    corpus = synthetic_corpus(passages, dim, clusters=2000, seed=seed)
    rng = np.random.default_rng(seed + 1)
    picks = rng.integers(0, passages, queries)
    noise = rng.standard_normal((queries, dim)).astype(np.float32) / math.sqrt(dim)
    q = corpus[picks] + 0.5 * noise  # cosine ≈ 0.9 to one passage, like a good match
    faiss_normalise(q)

    began = time.perf_counter()
    indexes = _ivf_shards(corpus, shards, nlist, nprobe, rng)
    build_s = time.perf_counter() - began
    latencies, found = _search_each(indexes, q)

    exact = faiss.IndexFlatIP(dim)
    exact.add(corpus)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    _, truth = exact.search(q, 10)
    recall = float(
        np.mean([len(set(f) & set(t.tolist())) / 10 for f, t in zip(found, truth, strict=True)])
    )
    ms = np.array(latencies) * 1000
    p50, p99 = (round(float(np.percentile(ms, p)), 2) for p in (50, 99))
    return ScaleResult(
        passages, shards, dim, nlist, nprobe, round(build_s, 1), p50, p99, round(recall, 4)
    )


def _ivf_shards(corpus, shards: int, nlist: int, nprobe: int, rng) -> list[tuple]:
    """[(IVF index, row offset)] over equal slices of ``corpus``."""
    dim = corpus.shape[1]
    bounds = np.linspace(0, len(corpus), shards + 1).astype(int)
    indexes = []
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        part = corpus[start:stop]
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(part[rng.choice(len(part), min(len(part), nlist * 40), replace=False)])
        index.add(part)
        index.nprobe = nprobe
        indexes.append((index, start))
    return indexes


def _search_each(indexes: list[tuple], queries) -> tuple[list[float], list[list[int]]]:
    """One query at a time over every shard, merged as serving merges: (seconds, top-10 ids)."""
    latencies, found = [], []
    for row in queries:
        started = time.perf_counter()
        per_shard = []
        for index, offset in indexes:
            scores, ids = index.search(row[None], 10)
            per_shard.append(
                [(float(s), str(i + offset), "") for s, i in zip(scores[0], ids[0], strict=True)]
            )
        merged = merge_topk(per_shard, 10)
        latencies.append(time.perf_counter() - started)
        found.append([doc_id for _, doc_id, _ in merged])
    return latencies, found


# ---------------------------------------------------------------------- the command
def replica_nice(settings: Settings) -> int:
    """The niceness the app's replicas run at (the in-process bound runs at the same)."""
    try:
        connect(settings, quiet=True)
        details = serve_details()
        replica = details["applications"][APP_NAME]["deployments"][INGRESS]["replicas"][0]
        return psutil.Process(replica["pid"]).nice()
    except Exception:  # not on the app's machine, or no access: assume Ray's default
        return RAY_WORKER_NICE


def _in_child(func: str, payload: dict, nice: int, timeout_s: float) -> list | dict:
    """Run ``func(**payload)`` of this module in a child process at ``nice``; JSON back."""
    code = (
        "import json, sys; from monitoring import bench; "
        f"out = bench.{func}(**json.loads(sys.argv[1])); "
        "print(json.dumps([bench.asdict(o) for o in out] if isinstance(out, list) "
        "else bench.asdict(out)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(payload)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=timeout_s,
        preexec_fn=lambda: os.nice(nice),
    )
    if result.returncode != 0:
        raise RuntimeError(f"{func} failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def served_vs_inprocess(settings: Settings, levels: list[int], total: int, max_s: float, console):
    """Served levels (HTTP) and the in-process bound at the same levels, as one table."""
    health = httpx.get(f"{settings.api_base_url}/healthz", timeout=10).json()
    version = health["version"]
    version_dir = ArtifactStore.from_settings(settings).download(version)
    nice = replica_nice(settings)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    console.print(
        f"live version {version} at {settings.api_base_url}; {os.cpu_count()} cores, "
        f"load average {load}; replicas and in-process bound at nice {nice}, "
        f"load generator at nice {LOADGEN_NICE}"
    )

    rows = [served_level(settings.api_base_url, c, total, max_s) for c in levels]
    floor = served_level(settings.api_base_url, max(levels), total, max_s, route="/healthz")
    bound = [
        Level(**row)
        for row in _in_child(
            "inprocess_levels",
            {
                "version_dir": str(version_dir),
                "levels": levels,
                "total": total,
                "max_s": max_s,
                "batch_size": settings.encoder_batch_size,
            },
            nice,
            timeout_s=len(levels) * (max_s + 60) + 120,
        )
    ]
    console.print(_comparison_table(version, rows, bound))
    top_i = levels.index(max(levels))  # the floor ran at the highest level
    top, top_bound = rows[top_i], bound[top_i]
    # A served search does at least a trivial request's work plus the in-process search's, so
    # with the machine CPU-bound 1/served >= 1/floor + 1/bound: served/bound <= floor/(floor
    # + bound). An estimate: neither level is perfectly CPU-bound (see their idle shares).
    ceiling = floor.qps / (floor.qps + top_bound.qps) if floor.qps + top_bound.qps else 0.0
    console.print(
        f"HTTP floor at concurrency {floor.concurrency}: GET /healthz (no search) "
        f"{floor.qps:.1f} QPS, p50 {floor.p50_ms:.1f} ms, {floor.errors} errors, idle/steal "
        f"{_share(floor)} %, CPU {_cpu(floor)} ms/request: the most any route serves here, "
        f"{_ratio(floor.qps, top_bound.qps)} of the in-process bound. /search reaches "
        f"{_ratio(top.qps, floor.qps)} of the floor. Were a served search to cost only a "
        f"trivial request plus the in-process search, served ÷ in-process would be at most about "
        f"{ceiling:.0%} (floor ÷ (floor + in-process))."
    )


def _comparison_table(version: str, rows: list[Level], bound: list[Level]) -> Table:
    table = Table(title=f"served vs in-process, version {version}")
    columns = ["conc.", "requests", "errors", "QPS", "p50 ms", "p95 ms", "p99 ms"]
    columns += ["idle/steal %", "CPU ms/req", "in-process QPS", "p50 ms", "idle/steal %"]
    for column in [*columns, "CPU ms/req", "served ÷ in-process"]:
        table.add_column(column, justify="right")
    for s, b in zip(rows, bound, strict=True):
        served = [str(s.concurrency), str(s.requests), str(s.errors), f"{s.qps:.1f}"]
        served += [f"{s.p50_ms:.1f}", f"{s.p95_ms:.1f}", f"{s.p99_ms:.1f}", _share(s), _cpu(s)]
        local = [f"{b.qps:.1f}", f"{b.p50_ms:.1f}", _share(b), _cpu(b), _ratio(s.qps, b.qps)]
        table.add_row(*served, *local)
    return table


def _share(level: Level) -> str:
    if level.idle_pct is None or level.steal_pct is None:
        return "n/a"
    return f"{level.idle_pct:.0f}/{level.steal_pct:.0f}"


def _cpu(level: Level) -> str:
    return "n/a" if level.cpu_ms is None else f"{level.cpu_ms:.2f}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.0%}" if b else "n/a"


def main(
    settings: Settings,
    levels: list[int],
    total: int,
    max_s: float,
    scale: bool = True,
    scale_passages: int = 1_000_000,
    served: bool = True,
) -> None:

    console = Console(width=160)
    if served:
        served_vs_inprocess(settings, levels, total, max_s, console)
    if scale:
        console.print(f"scale: building {scale_passages:,} synthetic passages over 4 IVF shards…")
        result = ScaleResult(
            **_in_child("scale_test", {"passages": scale_passages}, 0, timeout_s=3600)
        )
        console.print(
            f"scale: {result.passages:,} passages, {result.shards} IVF shards "
            f"(dim {result.dim}, nlist {result.nlist}/shard, nprobe {result.nprobe}), "
            f"built in {result.build_s:.0f}s: p50 {result.p50_ms:.2f} ms, "
            f"p99 {result.p99_ms:.2f} ms, recall@10 vs exact {result.recall_at_10:.3f}"
        )


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "--loadgen":
    _, _, url, conc, count, seconds = sys.argv
    level = asyncio.run(_closed_loop(url, int(conc), int(count), float(seconds)))
    print(json.dumps(asdict(level)))
