"""The gate's traffic figures (learning/traffic_gate.py): the tiny version's traffic-weighted
MRR@10 on a day of dev queries, alone and with the click memory read from a real PostgreSQL
after three users from three addresses clicked a relevant result below the top."""

from __future__ import annotations

import pytest

from cluster.logstore import ResultItem, SearchRecord
from cluster.logstore.click_memory import ClickMemoryStore
from cluster.logstore.records import client_id
from learning.traffic import TrafficDay, traffic_weighted_mrr
from learning.traffic_gate import memory_priors, traffic_metrics
from tests.cluster.test_click_memory_store import click, own_db, writer  # noqa: F401
from training import datasets
from training.evaluation.runs import dense_ranking, dense_search
from training.text import query_key


@pytest.fixture(scope="module")
def day(tiny_version_dir) -> TrafficDay:
    """Forty judged dev queries, asked 1 to 5 times each."""
    queries, qrels = datasets.load_queries("dev"), datasets.load_qrels("dev")
    qids = sorted(q for q in queries if q in qrels)[:40]
    return TrafficDay(
        queries={q: queries[q] for q in qids},
        counts={q: 1 + i % 5 for i, q in enumerate(qids)},
        qrels={q: qrels[q] for q in qids},
    )


def below_the_top(version_dir, day: TrafficDay, depth: int) -> tuple[str, str, list[str]]:
    """A query of the day whose relevant document the version ranks 2nd to ``depth``th:
    (qid, that document, the ranking as shown)."""
    qids, ids, _ = dense_search(version_dir, day.queries, depth)
    for qid, row in zip(qids, ids, strict=True):
        shown = [str(d) for d in row if d is not None]
        found = [d for d in shown[1:] if day.qrels[qid].get(d, 0) > 0]
        if found:
            return qid, found[0], shown
    pytest.skip("the tiny version ranks no relevant document below the top")


def test_the_version_alone_scores_as_the_traffic_metric_says(tiny_version_dir, day, settings):
    figures = traffic_metrics(tiny_version_dir, day, settings)
    ranking = dense_ranking(tiny_version_dir, day.queries)
    assert figures == {"traffic": {"MRR@10": round(traffic_weighted_mrr(ranking, day), 6)}}


def test_the_click_memory_lifts_the_clicked_relevant_result(tiny_version_dir, day, own_db, writer):  # noqa: F811
    depth = own_db.click_memory_depth
    qid, doc_id, shown = below_the_top(tiny_version_dir, day, depth)
    for user in range(own_db.click_memory_min_sessions):
        results = [ResultItem(doc_id=d, rank=r, score=1.0) for r, d in enumerate(shown[:depth], 1)]
        record = SearchRecord(
            session_id=f"user-{user}", client=client_id(f"198.51.100.{user}"),
            query=day.queries[qid], mode="dense", results=results,
        )  # fmt: skip
        writer.log_search(record)
        click(writer, record, doc_id)
    assert writer.flush(30)
    with ClickMemoryStore(own_db, query_key) as store:
        assert store.fold().folded == own_db.click_memory_min_sessions

    priors = memory_priors(own_db)
    assert set(priors(day.queries[qid])) == {doc_id}
    figures = traffic_metrics(tiny_version_dir, day, own_db, priors)
    assert figures["traffic_memory"]["MRR@10"] > figures["traffic"]["MRR@10"]
    nobody = memory_priors(own_db.model_copy(update={"click_memory_min_sessions": 99}))
    unmoved = traffic_metrics(tiny_version_dir, day, own_db, nobody)
    assert unmoved["traffic_memory"] == unmoved["traffic"]
