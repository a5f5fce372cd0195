"""The gate rule and the paired bootstrap used to report the loop's effect."""

from __future__ import annotations

import pytest

from learning.gate import MIN_LOGGED_QUERIES, decide
from training.evaluation.metrics import paired_bootstrap

LIVE = {"dev_untrained": {"MRR@10": 0.30}, "dl19": {"nDCG@10": 0.50}, "logged": {"MRR@10": 0.40}}


def metrics(dev, dl19, logged):
    return {
        "dev_untrained": {"MRR@10": dev},
        "dl19": {"nDCG@10": dl19},
        "logged": {"MRR@10": logged},
    }


def test_better_or_within_tolerance_passes():
    assert decide(LIVE, metrics(0.31, 0.495, 0.40), 0.01, MIN_LOGGED_QUERIES).passed


def test_worse_beyond_tolerance_on_any_set_fails_and_says_which():
    decision = decide(LIVE, metrics(0.35, 0.48, 0.45), 0.01, MIN_LOGGED_QUERIES)
    assert not decision.passed
    assert "dl19 nDCG@10 -0.0200" in decision.reason
    assert decision.deltas["dev_untrained/MRR@10"] == pytest.approx(0.05)


def test_small_logged_slice_is_not_gated_but_reported():
    decision = decide(LIVE, metrics(0.30, 0.50, 0.0), 0.01, MIN_LOGGED_QUERIES - 1)
    assert decision.passed
    assert "logged slice skipped" in decision.reason
    assert "logged/MRR@10" not in decision.deltas


def test_missing_metric_or_negative_tolerance_is_a_clear_error():
    with pytest.raises(ValueError, match="missing dl19 nDCG@10"):
        decide(LIVE, {"dev_untrained": {"MRR@10": 0.3}}, 0.01, 0)
    with pytest.raises(ValueError, match="gate_tolerance"):
        decide(LIVE, LIVE, -0.1, 0)


def test_the_held_out_days_traffic_is_gated_when_both_versions_have_it():
    live = {**LIVE, "traffic": {"MRR@10": 0.50}}
    worse = {**metrics(0.30, 0.50, 0.40), "traffic": {"MRR@10": 0.45}}
    decision = decide(live, worse, 0.01, MIN_LOGGED_QUERIES)
    assert not decision.passed and "traffic MRR@10 -0.0500" in decision.reason
    better = {**metrics(0.30, 0.50, 0.40), "traffic": {"MRR@10": 0.60}}
    assert decide(live, better, 0.01, MIN_LOGGED_QUERIES).deltas["traffic/MRR@10"] == 0.1


def test_without_a_held_out_day_the_traffic_is_skipped_and_said():
    decision = decide(LIVE, metrics(0.30, 0.50, 0.40), 0.01, MIN_LOGGED_QUERIES)
    assert decision.passed and "traffic skipped" in decision.reason
    assert "traffic/MRR@10" not in decision.deltas


def test_paired_bootstrap_interval():
    before = {f"q{i}": 0.0 for i in range(100)}
    after = {f"q{i}": (1.0 if i < 20 else 0.0) for i in range(100)}
    delta, low, high = paired_bootstrap(before, after)
    assert delta == pytest.approx(0.2)
    assert 0.1 < low < 0.2 < high < 0.3
    assert paired_bootstrap(before, before) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same non-empty query set"):
        paired_bootstrap(before, {"x": 1.0})
