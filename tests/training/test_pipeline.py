"""Profiles and `twotower train --set` overrides: what an ablation run changes, and clear errors."""

import os
import subprocess
import sys

import pytest

from training.pipeline import PROFILES, get_profile, with_overrides


def test_overrides_change_only_what_they_name_and_are_recorded():
    quick = get_profile("quick")
    changed = with_overrides(
        quick, ["train.next_token_weight=0", 'model.rnn="lstm"', "data.ict=0", "ablation=false"]
    )
    assert changed.train.next_token_weight == 0 and changed.model["rnn"] == "lstm"
    assert changed.data.ict == 0 and changed.ablation is False
    assert changed.train.epochs == quick.train.epochs and changed.word2vec == quick.word2vec
    assert changed.overrides == (
        "train.next_token_weight=0", "model.rnn=\"lstm\"", "data.ict=0", "ablation=false"
    )  # fmt: skip
    assert quick.train.next_token_weight > 0  # the registered profile is untouched


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epoch=3", "unknown train keys"),
        ("optimizer.lr=1", "section.key=value"),
        ("epochs", "section.key=value"),
        ("model.vocab_size=10", "unknown model keys"),
        ("train.epochs=-1", "epochs must be a positive integer"),
        ("data.ict=-5", "must be >= 0"),
        ("ablation=no", "ablation=true"),
        ("train.seed=14", "TWOTOWER_SEED"),
    ],
)
def test_bad_overrides_get_a_clear_error(override, message):
    with pytest.raises(ValueError, match=message):
        with_overrides(get_profile("quick"), [override])


def test_profiles_that_distil_embeddings_match_the_teacher_dimension():
    for profile in PROFILES.values():
        if profile.train.embed_distill_weight > 0:
            assert profile.model["dim"] == 384, profile.name  # all-MiniLM-L6-v2's size


def test_training_joins_the_running_local_head_instead_of_starting_its_own(ray_local):
    """`twotower train` beside `twotower up`: no ray_address configured, but the local stack's
    head listens on host:ray_port, so the training driver joins it (a second Ray would cost
    ~2 GB and stay out of the stack's dashboard)."""
    host, port = ray_local.ray_address.rsplit(":", 1)
    script = (
        "import ray\n"
        "from cluster.config import get_settings\n"
        "from cluster.ray_connection import connect\n"
        "started = connect(get_settings(), start_local=True)\n"
        "print(started, ray.get_runtime_context().gcs_address)\n"
        "ray.shutdown()\n"
    )
    env = {**os.environ, "TWOTOWER_HOST": host, "TWOTOWER_RAY_PORT": port}
    env.pop("TWOTOWER_RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["False", ray_local.ray_address]
