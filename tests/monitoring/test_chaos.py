"""The fault campaign (monitoring/chaos.py) against the session's real servers and Serve app:
searches and clicks under load while PostgreSQL or S3 is stopped and started again, or a
replica of each kind is SIGKILLed; every acknowledged record must reach PostgreSQL. Small
counts, bounded time; each scenario prints its row of `twotower chaos`'s table."""

from __future__ import annotations

import pytest

from deployments.app import ENCODER, INGRESS, shard_name
from monitoring import chaos

PLAN = chaos.Plan(clients=2, warm_s=2.0, outage_s=4.0, after_s=2.0, max_searches=3_000,
                  click_rate=4.0, flush_s=90.0)  # fmt: skip


def fault(scenario: str, postgres, s3) -> chaos.Fault:
    """The scenario aimed at the fixtures' servers (`twotower chaos` aims at the stack's)."""
    return {
        "postgresql": lambda: chaos.server_outage("PostgreSQL outage", postgres, PLAN),
        "encoder": lambda: chaos.replica_kill(ENCODER, PLAN),
        "shard": lambda: chaos.replica_kill(shard_name(0), PLAN),
        "ingress": lambda: chaos.replica_kill(INGRESS, PLAN),
        "s3": lambda: chaos.server_outage("S3 outage", s3, PLAN),
    }[scenario]()


@pytest.mark.parametrize("scenario", chaos.SCENARIOS)
def test_no_acknowledged_record_is_lost(serving, postgres, s3, scenario):
    try:
        row = chaos.run(serving, fault(scenario, postgres, s3), PLAN)
    finally:
        for server in (postgres, s3):
            if not server.healthy():
                server.start()
    print("\n" + chaos.table([row]))
    assert row.searches > 0 and row.feedback > 0
    assert row.during_fault > 0, "no search was answered (and logged) during the fault"
    assert row.lost == 0, f"{row.lost} acknowledged records are not in PostgreSQL"


def test_the_campaign_refuses_an_unknown_scenario(serving):
    with pytest.raises(chaos.ChaosError, match="unknown scenario.*postgresql"):
        chaos.main(serving, ["meteor"], PLAN, echo=lambda line: None)
