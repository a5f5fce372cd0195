"""The quality gate: a candidate goes live only if no gated metric is worse than the live
version's by more than ``settings.gate_tolerance`` (absolute)."""

from __future__ import annotations

from dataclasses import dataclass

# (evaluation set, metric) pairs the gate compares: dev without the queries the run trained
# on (evaluation.eval_sets), DL19, the logged slice, which only counts when it has enough
# queries to be more than noise, and the traffic-weighted MRR@10 of the held-out next day
# (learning/traffic_gate.py), when a simulation stored one.
GATED = (
    ("dev_untrained", "MRR@10"),
    ("dl19", "nDCG@10"),
    ("logged", "MRR@10"),
    ("traffic", "MRR@10"),
)
MIN_LOGGED_QUERIES = 20
OPTIONAL = {"traffic": "no held-out day of traffic stored (`twotower simulate` stores one)"}


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    deltas: dict[str, float]  # "set/metric" -> candidate - live


def decide(
    live: dict[str, dict[str, float]],
    candidate: dict[str, dict[str, float]],
    tolerance: float,
    logged_queries: int,
) -> GateDecision:
    if tolerance < 0:
        raise ValueError(f"gate_tolerance must be >= 0, got {tolerance}")
    deltas, worse, skipped = {}, [], []
    for split, metric in GATED:
        if split == "logged" and logged_queries < MIN_LOGGED_QUERIES:
            skipped.append(f"logged slice skipped: {logged_queries} < {MIN_LOGGED_QUERIES} queries")
            continue
        missing = metric not in live.get(split, {}) or metric not in candidate.get(split, {})
        if missing and split in OPTIONAL:
            skipped.append(f"{split} skipped: {OPTIONAL[split]}")
            continue
        if missing:
            raise ValueError(f"missing {split} {metric} in the metrics to gate")
        delta = candidate[split][metric] - live[split][metric]
        deltas[f"{split}/{metric}"] = round(delta, 6)
        if delta < -tolerance:
            worse.append(f"{split} {metric} {delta:+.4f}")
    note = "; ".join(skipped)
    if worse:
        reason = f"worse beyond tolerance {tolerance}: " + ", ".join(worse)
        return GateDecision(False, "; ".join(filter(None, [reason, note])), deltas)
    reason = f"not worse beyond tolerance {tolerance}: " + ", ".join(
        f"{k} {v:+.4f}" for k, v in deltas.items()
    )
    return GateDecision(True, "; ".join(filter(None, [reason, note])), deltas)
