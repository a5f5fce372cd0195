"""Traffic as users ask it: a query pool with judgments, a day of queries with how often each
was asked, and the traffic-weighted MRR@10 that judges a ranking on that day.

It lives on the learning floor so that the simulator (``twotower simulate``), which writes a
held-out next day into the artifact store, and the learning loop, which reads it back to
compare the live version with a candidate, score the same day the same way. What users ask
most counts most: a query asked 40 times weighs 40 times a query asked once, which is the
mean reciprocal rank over the day's searches rather than over its distinct queries.

Measurement searches (the simulator asking each query of a day once, to score the live
stack) carry a session id starting with ``MEASURE_SESSION_PREFIX``; the loop never learns
from them (``learning.triplets.build_log_data``).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cluster.artifacts import ArtifactStore
from learning.splits import dev_split
from training.datasets import load_qrels, read_qrels, read_queries
from training.evaluation.metrics import PerQuery, measures_for, per_query

MEASURE_SESSION_PREFIX = "measure-"
LATEST_KEY = "traffic/latest.json"  # the held-out next day the simulator wrote last
TOP_BLOCK = re.compile(r"<top>(.*?)</top>", re.DOTALL | re.IGNORECASE)
NUM_TAG = re.compile(r"<num>\s*(?:Number:)?\s*([^\s<]+)", re.IGNORECASE)
TITLE_TAG = re.compile(r"<title>\s*(?:Topic:)?\s*(.*?)\s*(?=</?\w+>|\Z)", re.DOTALL | re.IGNORECASE)


class PoolError(ValueError):
    """A query pool or its judgments cannot be used (missing file, bad format, nothing judged)."""


def is_measurement(session_id: str | None) -> bool:
    """True for the searches a measurement made: they judge the stack and must not teach it."""
    return bool(session_id) and session_id.startswith(MEASURE_SESSION_PREFIX)


# --------------------------------------------------------------------------- query pools
@dataclass(frozen=True)
class QueryPool:
    """The queries simulated users may ask (each with at least one relevant judgment)."""

    queries: dict[str, str]  # qid -> text
    qrels: dict[str, dict[str, int]]  # qid -> {doc_id: grade}, only the pool's queries
    source: str
    unjudged: int = 0  # queries of the file left out: no relevant judgment

    @property
    def max_grade(self) -> int:
        return max((g for docs in self.qrels.values() for g in docs.values()), default=1)

    def describe(self) -> dict:
        return {"source": self.source, "queries": len(self.queries), "unjudged": self.unjudged}


def _read_text(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return handle.read()


def parse_trec_topics(text: str) -> dict[str, str]:
    """``<top> <num> Number: N ... <title> text ... </top>`` blocks -> {qid: title}. The title
    runs to the next tag; a ``Topic:`` label before it is dropped."""
    topics = {}
    for block in TOP_BLOCK.findall(text):
        num, title = NUM_TAG.search(block), TITLE_TAG.search(block)
        if num is None or title is None:
            raise PoolError(f"a <top> block without <num> or <title>: {block.strip()[:80]!r}")
        topics[num.group(1)] = " ".join(title.group(1).split())
    return topics


def read_topics(path: Path) -> dict[str, str]:
    """Queries from a TREC topic file or a ``qid<TAB>text`` TSV (gzipped or not); blank
    queries are dropped (the API refuses them)."""
    path = Path(path)
    if not path.is_file():
        raise PoolError(f"{path} does not exist")
    try:
        text = _read_text(path)
        if text.lstrip().startswith("<"):
            queries = parse_trec_topics(text)
        else:
            queries = read_queries(path)
    except (IndexError, UnicodeDecodeError, OSError, EOFError) as err:
        raise PoolError(f"{path} is neither TREC topics nor qid<TAB>query lines: {err}") from None
    return {qid: q.strip() for qid, q in queries.items() if q.strip()}


def read_judgments(path: Path) -> dict[str, dict[str, int]]:
    """TREC qrels ``qid 0 doc_id grade`` (gzipped or not), through the training loader."""
    path = Path(path)
    if not path.is_file():
        raise PoolError(f"{path} does not exist")
    try:
        return read_qrels(path)
    except (ValueError, UnicodeDecodeError, OSError, EOFError) as err:
        raise PoolError(f"{path}: {err}") from None


def judged_pool(
    queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]], source: str
) -> QueryPool:
    """The queries that have a relevant judgment; an error if there are none."""
    if not queries:
        raise PoolError(f"no query in {source}")
    judged = {
        qid: text
        for qid, text in queries.items()
        if any(g > 0 for g in qrels.get(qid, {}).values())
    }
    if not judged:
        raise PoolError(f"no query of {source} has a relevant judgment")
    return QueryPool(
        queries=dict(sorted(judged.items())),
        qrels={qid: {str(d): int(g) for d, g in qrels[qid].items()} for qid in sorted(judged)},
        source=source,
        unjudged=len(queries) - len(judged),
    )


def load_pool(queries_file: Path, qrels_file: Path) -> QueryPool:
    """``--queries FILE --qrels FILE``: any TREC topics (or TSV) and qrels."""
    queries = read_topics(queries_file)
    qrels = read_judgments(qrels_file)
    return judged_pool(queries, qrels, f"{queries_file} judged by {qrels_file}")


def default_pool() -> QueryPool:
    """The simulated dev half with the dev qrels: the only dev queries the loop may learn."""
    return judged_pool(dev_split().simulated, load_qrels("dev"), "dev (simulated half)")


# --------------------------------------------------------------------------- a day of traffic
@dataclass(frozen=True)
class TrafficDay:
    """One day of traffic: how often each query was asked, with its text and judgments."""

    queries: dict[str, str]  # qid -> text, the queries asked this day
    counts: dict[str, int]  # qid -> searches this day (> 0)
    qrels: dict[str, dict[str, int]]  # qid -> {doc_id: grade}
    meta: dict = field(default_factory=dict)  # where it came from: seed, zipf, day, pool

    def __post_init__(self) -> None:
        bad = [q for q, n in self.counts.items() if n < 1 or q not in self.queries]
        unjudged = [q for q in self.counts if q not in self.qrels]
        if bad or unjudged or not self.counts:
            raise ValueError(
                f"a traffic day needs positive counts of known, judged queries "
                f"(bad: {bad[:3]}, unjudged: {unjudged[:3]}, queries: {len(self.counts)})"
            )

    @property
    def searches(self) -> int:
        return sum(self.counts.values())

    def to_json(self) -> dict:
        return {
            "queries": self.queries,
            "counts": self.counts,
            "qrels": self.qrels,
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, payload: Mapping) -> TrafficDay:
        return cls(
            queries={str(q): str(t) for q, t in payload["queries"].items()},
            counts={str(q): int(n) for q, n in payload["counts"].items()},
            qrels={
                str(q): {str(d): int(g) for d, g in docs.items()}
                for q, docs in payload["qrels"].items()
            },
            meta=dict(payload.get("meta", {})),
        )


def day_of(counts: Mapping[str, int], pool: QueryPool, meta: Mapping | None = None) -> TrafficDay:
    """A traffic day over ``pool``'s queries, keeping only what the asked queries need."""
    asked = {q: int(n) for q, n in sorted(counts.items()) if n > 0}
    return TrafficDay(
        queries={q: pool.queries[q] for q in asked},
        counts=asked,
        qrels={q: pool.qrels[q] for q in asked},
        meta=dict(meta or {}),
    )


# --------------------------------------------------------------------------- the metric
def reciprocal_ranks(ranking: Mapping[str, Sequence[str]], day: TrafficDay) -> PerQuery:
    """RR@10 of each query of the day (0 when unanswered). On graded judgments (TREC DL) a
    result is relevant from grade 2, as every other MRR@10 of the product counts it."""
    qrels = {q: day.qrels[q] for q in day.counts}
    measure = measures_for(qrels)["MRR@10"]
    return per_query({q: list(ranking.get(q, [])) for q in day.counts}, qrels, measure)


def per_search(values: Mapping[str, float], day: TrafficDay) -> PerQuery:
    """One value per search of the day (``qid#i``): their mean is the traffic-weighted mean,
    and a paired bootstrap over them resamples searches, as the day's users made them."""
    return {f"{q}#{i}": values[q] for q, n in day.counts.items() for i in range(n)}


def weighted_mean(values: Mapping[str, float], day: TrafficDay) -> float:
    return sum(n * values.get(q, 0.0) for q, n in day.counts.items()) / day.searches


def traffic_weighted_mrr(ranking: Mapping[str, Sequence[str]], day: TrafficDay) -> float:
    """MRR@10 with each query weighted by how often ``day`` asks it.

    ``ranking`` is qid -> document ids, best first (``training.evaluation.runs.dense_ranking``
    of a version folder, or what the HTTP API answered)."""
    return weighted_mean(reciprocal_ranks(ranking, day), day)


# --------------------------------------------------------------------------- storage
def save_day(store: ArtifactStore, day: TrafficDay, key: str = LATEST_KEY) -> str:
    """Store ``day`` as JSON in the artifact store (one small PUT); returns its key."""
    store.put_json(key, day.to_json())
    return key


def load_day(store: ArtifactStore, key: str = LATEST_KEY) -> TrafficDay | None:
    """The day stored under ``key``, or None if nothing was stored there yet."""
    raw = store.get_bytes(key)
    return None if raw is None else TrafficDay.from_json(json.loads(raw))
