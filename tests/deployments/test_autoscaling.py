"""The encoder autoscales on load: a second replica under load, back to one after."""

from __future__ import annotations

import time

from ray import serve

from deployments.app import ENCODER, serve_config
from deployments.rollout import live_version
from deployments.serve_control import apply
from tests.deployments.test_rollout import Load


def running_encoders() -> int:
    app = serve.status().applications["twotower"]
    return app.deployments[ENCODER].replica_states.get("RUNNING", 0)


def wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_encoder_scales_up_under_load_and_down_after(serving):
    version = live_version()
    fast = serving.model_copy(
        update={
            "encoder_min_replicas": 1,
            "encoder_max_replicas": 2,
            "encoder_target_ongoing_requests": 0.2,  # ingress batches: few calls
            "encoder_upscale_delay_s": 1.0,
            "encoder_downscale_delay_s": 3.0,
        }
    )
    apply(serve_config(fast, [version], version))
    try:
        assert wait_for(lambda: running_encoders() == 1, 60)  # calm after earlier tests
        with Load(serving.api_base_url, clients=16) as load:
            scaled_up = wait_for(lambda: running_encoders() >= 2, 120)
        assert scaled_up, "no second encoder replica under load"
        assert load.responses and all(status == 200 for _, status, _ in load.responses)
        assert wait_for(lambda: running_encoders() == 1, 60), "did not scale back down"
    finally:
        apply(serve_config(serving, [version], version))
