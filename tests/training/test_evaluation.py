"""Metrics, fusion, TREC files, BM25 and the `twotower eval` command on small real inputs."""

import pytest
from typer.testing import CliRunner

from training.bm25 import BM25Config, BM25Index
from training.datasets import DATA_DIR, read_qrels, read_queries
from training.evaluation.metrics import evaluate_run
from training.evaluation.runs import hybrid_run, write_trec_run
from training.negatives import mine_bm25_negatives
from twotower.cli import app


def test_metrics_on_a_hand_made_run():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = {"q1": {"a": 3.0, "x": 2.0}, "q2": {"x": 3.0, "b": 2.0}}
    metrics = evaluate_run(run, qrels)
    assert metrics["MRR@10"] == pytest.approx((1 + 0.5) / 2)
    assert metrics["R@10"] == 1.0
    # A query the system did not answer counts as zero, not as missing.
    assert evaluate_run({"q1": run["q1"]}, qrels)["MRR@10"] == pytest.approx(0.5)


def test_graded_qrels_use_rel_2_for_the_binary_measures():
    qrels = {"q": {"a": 1, "b": 3}}
    assert evaluate_run({"q": {"a": 2.0, "b": 1.0}}, qrels)["MRR@10"] == pytest.approx(0.5)


def test_hybrid_run_and_trec_files(tmp_path):
    dense, lexical = {"q": {"a": 0.9, "b": 0.5, "d": 0.1}}, {"q": {"b": 5.0, "c": 4.0, "a": 1.0}}
    fused = hybrid_run(dense, lexical, dense_weight=0.5)
    # b is near the top of both runs; a tops dense but is last in BM25
    assert list(fused["q"]) == ["b", "a", "c", "d"]
    write_trec_run(fused, tmp_path / "run.trec", tag="hybrid")
    lines = (tmp_path / "run.trec").read_text().splitlines()
    assert lines[0].split() == ["q", "Q0", "b", "1", f"{fused['q']['b']:.6f}", "hybrid"]


PASSAGES = [
    "the eiffel tower is in paris france",
    "paris is the capital of france",
    "bananas are yellow",
    "the tower of london is old",
    "jupiter is a planet",
]


def test_bm25_ranks_stems_and_mines_negatives_without_the_positive():
    ids = ["p10", "p11", "p12", "p13", "p14"]
    index = BM25Index.build(ids, PASSAGES, BM25Config())
    found, scores = index.search(["towers in Paris"], k=3)
    assert found[0, 0] == "p10" and scores[0, 0] > scores[0, 1]  # "towers" stems to "tower"
    assert index.run({"q": "the of and"}) == {"q": {}}  # only stop words: no hits
    text_of = dict(zip(ids, PASSAGES, strict=True))
    mined = mine_bm25_negatives(
        index, text_of, ["capital of france"], ["Paris: " + PASSAGES[1]], per_query=4, depth=4
    )
    assert mined[0] and "p11" not in mined[0]  # the positive (under a title prefix) is skipped
    with pytest.raises(ValueError, match="BM25 needs"):
        BM25Config(b=2.0)


def test_eval_command_rejects_bad_input_clearly(tmp_path):
    runner = CliRunner()
    queries, qrels = DATA_DIR / "queries.dl19.tsv.gz", DATA_DIR / "qrels.dl19.tsv.gz"
    result = runner.invoke(app, ["eval", "--queries", str(queries), "--qrels", str(qrels),
                                 "--system", "rnn,bert"])  # fmt: skip
    assert result.exit_code == 2 and "unknown system" in result.output
    result = runner.invoke(app, ["eval", "--queries", str(tmp_path / "x"), "--qrels", str(qrels)])
    assert result.exit_code == 2 and "does not exist" in result.output
    (tmp_path / "q.tsv").write_text("1\thello\n")
    result = runner.invoke(
        app, ["eval", "--queries", str(tmp_path / "q.tsv"), "--qrels", str(qrels)]
    )
    assert result.exit_code == 2 and "no query" in result.output
    assert read_queries(queries) and read_qrels(qrels)


def test_eval_command_prints_one_row_per_system(tiny_version_dir, tmp_path):
    """``--system`` takes a comma-separated list or repeats; each system is one row."""
    queries, qrels = DATA_DIR / "queries.dl19.tsv.gz", DATA_DIR / "qrels.dl19.tsv.gz"
    result = CliRunner().invoke(
        app,
        ["eval", "--queries", str(queries), "--qrels", str(qrels), "--system", "rnn",
         "--system", "hybrid", "--version", str(tiny_version_dir), "--run-out", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows] == ["system", "rnn", "hybrid"]
    assert (tmp_path / "rnn.trec").exists() and (tmp_path / "hybrid.trec").exists()
