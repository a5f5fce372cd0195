"""The simulator's click model: examination by rank (a settings list) x click probability by
judged grade."""

from __future__ import annotations

import random

import pytest

from cluster.config import Settings
from twotower.traffic_plan import ClickModel


def click_rates(model: ClickModel, shown, grades, trials=20000):
    rng = random.Random(0)
    counts = dict.fromkeys(shown, 0)
    for _ in range(trials):
        for doc_id in model.clicks(shown, grades, rng):
            counts[doc_id] += 1
    return {doc_id: n / trials for doc_id, n in counts.items()}


def test_the_examination_list_is_honoured_rank_by_rank():
    model = ClickModel(examination=(1.0, 0.6, 0.3), p_relevant=1.0, p_noise=0.0)
    shown = ["a", "b", "c", "d"]
    rates = click_rates(model, shown, dict.fromkeys(shown, 1))
    assert abs(rates["a"] - 1.0) < 0.01
    assert abs(rates["b"] - 0.6) < 0.02
    assert abs(rates["c"] - 0.3) < 0.02
    assert abs(rates["d"] - 0.3) < 0.02  # past the list: its last value


def test_relevant_results_are_clicked_more_and_higher_grades_most():
    model = ClickModel(examination=(1.0,) * 4, p_relevant=0.9, p_noise=0.05, max_grade=3)
    grades = {"g3": 3, "g2": 2, "g1": 1}  # "u" is unjudged
    rates = click_rates(model, ["u", "g1", "g2", "g3"], grades)
    assert abs(rates["g3"] - 0.9) < 0.02
    assert abs(rates["u"] - 0.05) < 0.01  # noise: clicks on what is not relevant
    assert rates["g3"] > rates["g2"] > rates["g1"] > rates["u"]
    assert abs(model.attractive(2) - (0.05 + 0.85 * 3 / 7)) < 1e-12  # gain 2**g - 1


def test_clicks_follow_position_times_relevance_with_eta():
    model = ClickModel(eta=1.0, p_relevant=0.9, p_noise=0.05)
    rates = click_rates(model, ["1", "2", "3", "4"], {"1", "4"})  # a set: grade 1 each
    assert abs(rates["1"] - 0.9) < 0.02  # rank 1: always examined
    assert abs(rates["4"] - 0.9 / 4) < 0.02  # rank 4: examined a quarter of the time
    assert abs(rates["2"] - 0.05 / 2) < 0.01


def test_the_default_is_the_settings_and_bad_probabilities_are_refused():
    settings = Settings()
    model = ClickModel.from_settings(settings, max_grade=3)
    assert model.examination == tuple(settings.simulate_examination) == ClickModel().examination
    assert list(model.examination) == sorted(model.examination, reverse=True)
    assert model.p_relevant > model.p_noise
    with pytest.raises(ValueError):
        ClickModel(examination=(1.0, 1.5))
    with pytest.raises(ValueError):
        ClickModel(examination=())
