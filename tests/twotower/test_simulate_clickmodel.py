"""The simulator's click model: position bias x relevance from qrels."""

from __future__ import annotations

import random

from twotower.simulate import ClickModel


def click_rates(model: ClickModel, shown, relevant, trials=20000):
    rng = random.Random(0)
    counts = dict.fromkeys(shown, 0)
    for _ in range(trials):
        for doc_id in model.clicks(shown, relevant, rng):
            counts[doc_id] += 1
    return {doc_id: n / trials for doc_id, n in counts.items()}


def test_clicks_follow_examination_times_relevance():
    model = ClickModel(eta=1.0, p_relevant=0.9, p_noise=0.05)
    rates = click_rates(model, ["1", "2", "3", "4"], relevant={"1", "4"})
    assert abs(rates["1"] - 0.9) < 0.02  # rank 1: always examined
    assert abs(rates["4"] - 0.9 / 4) < 0.02  # rank 4: examined a quarter of the time
    assert abs(rates["2"] - 0.05 / 2) < 0.01  # irrelevant: noise clicks only


def test_no_position_bias_when_eta_is_zero():
    rates = click_rates(
        ClickModel(eta=0.0, p_relevant=1.0, p_noise=0.0), ["5", "6", "7"], {"5", "7"}
    )
    assert rates == {"5": 1.0, "6": 0.0, "7": 1.0}
