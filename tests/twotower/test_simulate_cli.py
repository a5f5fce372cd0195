"""`twotower simulate`, the real command: bad pools exit 2 before anything runs; a small
simulation against the served app reports the traffic-weighted MRR@10 before and after,
stores the held-out next day in S3, and leaves nothing the loop would learn from its
measurement searches or its bot."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from cluster.artifacts import ArtifactStore
from cluster.logstore import LogReader
from deployments.rollout import rollout
from learning.events import events_from_rows
from learning.splits import dev_split
from learning.traffic import MEASURE_SESSION_PREFIX, load_day
from learning.triplets import TripletConfig, build_log_data
from training.datasets import load_qrels

TWOTOWER = str(Path(sys.executable).parent / "twotower")


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [TWOTOWER, "simulate", *args],
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(f"$ twotower simulate {' '.join(args)} (rc={result.returncode})\n{result.stderr[-2000:]}")
    return result


def write_pool(folder: Path, size: int) -> tuple[Path, Path, dict[str, str]]:
    """``size`` simulated-half dev queries as TREC topics, one more without judgments, and
    their qrels gzipped."""
    queries = dict(sorted(dev_split().simulated.items())[:size])
    qrels = load_qrels("dev")
    topics = [
        f"<top>\n<num> Number: {qid}\n<title> {text}\n<desc> Description:\nnone\n</top>\n"
        for qid, text in [*queries.items(), ("999999999", "a query nobody judged")]
    ]
    (folder / "topics.txt").write_text("\n".join(topics))
    with gzip.open(folder / "qrels.txt.gz", "wt") as handle:
        for qid in queries:
            for doc_id, grade in qrels[qid].items():
                handle.write(f"{qid} 0 {doc_id} {grade}\n")
    return folder / "topics.txt", folder / "qrels.txt.gz", queries


def test_a_missing_file_or_a_pool_without_judgments_exits_2(tmp_path):
    (tmp_path / "q.tsv").write_text("1\tsome query\n")
    (tmp_path / "r.txt").write_text("2 0 d1 1\n")
    missing = run("--queries", str(tmp_path / "none.tsv"), "--qrels", str(tmp_path / "r.txt"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    unjudged = run("--queries", str(tmp_path / "q.tsv"), "--qrels", str(tmp_path / "r.txt"))
    assert unjudged.returncode == 2 and "relevant judgment" in unjudged.stderr
    alone = run("--queries", str(tmp_path / "q.tsv"))
    assert alone.returncode == 2 and "both or neither" in alone.stderr


@pytest.mark.timeout(600)
def test_a_small_simulation_reports_before_and_after_and_stores_the_next_day(
    serving, tiny_version, tmp_path
):
    settings, base, _ = tiny_version
    rollout(serving, base)  # earlier tests may have moved LATEST
    topics, qrels, queries = write_pool(tmp_path, size=15)
    with LogReader(serving) as logs:
        watermark = logs.latest_feedback_id()
    # A near-random tiny model shows few relevant passages: noisier users make clicks happen.
    result = run(
        *("--queries", str(topics), "--qrels", str(qrels), "--sessions", "20", "--zipf", "1.0"),
        *("--seed", "3", "--dwell", "0.3", "0.5", "--concurrency", "4"),
        *("--report", str(tmp_path / "report.json")),
        env={"TWOTOWER_SIMULATE_P_CLICK_IRRELEVANT": "0.3"},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    print(json.dumps(report, indent=1))
    assert report["pool"]["queries"] == 15 and report["pool"]["unjudged"] == 1
    figures = report["traffic_weighted_mrr10"]
    for when in ("before", "after"):
        assert 0 <= figures[when]["mrr10"] <= 1 and figures[when]["failures"] == 0
        assert figures[when]["versions"] == [base] and figures[when]["mode"] == ["hybrid"]
    assert figures["change"]["delta"] == pytest.approx(
        figures["after"]["mrr10"] - figures["before"]["mrr10"], abs=2e-4
    )
    stats = report["sessions"]
    assert stats["failures"] == [] and stats["sessions"] == 20 and stats["searches"] == 20
    assert stats["clicks"] > 0 and stats["bots"] == 1 and stats["bot_searches"] >= 1

    day = load_day(ArtifactStore.from_settings(serving))
    assert day is not None and day.searches == 20 and day.meta["seed"] == 3
    assert set(day.counts) <= set(queries) and report["held_out_day"]["queries"] == len(day.counts)
    assert_the_loop_learns_only_from_people(serving, watermark, stats["clicks"])

    # `--measure` asks the stored day again (the click memory may have folded a last click
    # since the "after"), with no sessions.
    again = run("--measure")
    assert again.returncode == 0, again.stderr
    measured = json.loads(again.stdout)
    assert measured["held_out_day"]["seed"] == 3
    assert measured["traffic_weighted_mrr10"]["versions"] == [base]
    assert 0 <= measured["traffic_weighted_mrr10"]["mrr10"] <= 1


def assert_the_loop_learns_only_from_people(settings, watermark: int, clicks: int) -> None:
    """Measurement searches were logged but clicked nothing; the bot's clicks are dropped."""
    with psycopg.connect(settings.dsn) as conn:
        measured, measure_feedback = conn.execute(
            "SELECT count(DISTINCT s.id), count(f.id) FROM searches s"
            " LEFT JOIN feedback f ON f.search_id = s.id WHERE s.session_id LIKE %s",
            (MEASURE_SESSION_PREFIX + "%",),
        ).fetchone()
    assert measured > 0 and measure_feedback == 0
    with LogReader(settings) as logs:
        events = events_from_rows(logs.feedback_since(watermark))
    data = build_log_data(events, TripletConfig(holdout_fraction=0.0))
    assert data.bot_sessions == 1
    assert data.events_used == clicks
