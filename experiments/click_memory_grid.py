"""Tune the click memory's blend weight and minimum evidence offline, on simulated days that
are never used to report.

For each tuning seed: a day of Zipf traffic over the pool (twotower/traffic_plan.py), each
user clicking the version's hybrid top 10 by the simulator's click model, folded into priors as
the memory folds them (cluster/logstore/click_prior.py); then the held-out next day's
traffic-weighted MRR@10 for every (weight, min_sessions) of the grid, re-ranked by the blend
serving uses (deployments/click_memory.py). Clicks see the ranking without the memory, so the
figures are what a day's clicks teach at least. Report seeds (1, 2, 3 in docs/results) are not
tuning seeds.

    python -m experiments.click_memory_grid VERSION_DIR [--seeds 101 102 103] [--sessions 2000]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cluster.config import get_settings
from cluster.logstore.click_prior import ClickEvent, PriorParams, build_priors
from learning.traffic import default_pool, traffic_weighted_mrr
from learning.traffic_gate import blended_ranking
from training.bm25 import BM25Index
from training.evaluation.runs import dense_run, hybrid_run
from training.text import query_key
from training.version import indexed_collection
from twotower.traffic_plan import ClickModel, held_out_day, plan_traffic, user_sessions

WEIGHTS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
MIN_SESSIONS = (1, 2, 3, 5)
DEPTH = 20


def hybrid_hits(version_dir: Path, queries: dict[str, str], weight: float) -> dict[str, list]:
    """qid -> [(score, doc_id, "")] of the version's hybrid top DEPTH, best first."""
    collection = indexed_collection(version_dir)
    lexical = BM25Index.build(collection.ids, collection.texts).run(queries, 100)
    fused = hybrid_run(dense_run(version_dir, queries, 100), lexical, weight)
    return {q: [(s, d, "") for d, s in list(run.items())[:DEPTH]] for q, run in fused.items()}


def day_events(plan, pool, hits, model: ClickModel) -> list[ClickEvent]:
    """The clicks of the plan's first day, as the memory would read them."""
    events, start = [], datetime.now(UTC)
    for i, user in enumerate(user_sessions(plan, pool, 0, (0.4, 1.0))):
        shown = [d for _, d, _ in hits[user.qid][:10]]
        for doc_id in model.clicks(shown, user.grades, user.rng()):
            events.append(
                ClickEvent(
                    len(events) + 1,
                    query_key(user.query),
                    doc_id,
                    "click",
                    start + timedelta(seconds=i),
                    user.session_id,
                    f"client-{i}",
                    shown.index(doc_id) + 1,
                )  # fmt: skip
            )
    return events


def grid(version_dir: Path, seeds: list[int], sessions: int) -> dict:
    settings = get_settings()
    pool = default_pool()
    hits = hybrid_hits(version_dir, pool.queries, settings.hybrid_dense_weight)
    model = ClickModel.from_settings(settings, pool.max_grade)
    params = PriorParams.from_settings(settings)
    scores: dict[tuple, list[float]] = {}
    for seed in seeds:
        plan = plan_traffic(list(pool.queries), sessions, 1, 1.0, seed)
        day = held_out_day(plan, pool)
        priors = build_priors(day_events(plan, pool, hits, model), params)
        alone = {q: [d for _, d, _ in hits[q][:10]] for q in day.queries}

        def prior_of(query: str, priors=priors) -> dict:
            return priors.get(query_key(query), {})

        scores.setdefault(("none", 0), []).append(traffic_weighted_mrr(alone, day))
        for weight, least in itertools.product(WEIGHTS, MIN_SESSIONS):
            ranked = blended_ranking(
                hits, day, prior_of, weight, least,
                settings.click_memory_scale,
            )  # fmt: skip
            scores.setdefault((weight, least), []).append(traffic_weighted_mrr(ranked, day))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("version_dir", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103])
    parser.add_argument("--sessions", type=int, default=2000)
    args = parser.parse_args()
    scores = grid(args.version_dir, args.seeds, args.sessions)
    print("weight  min_sessions  traffic-weighted MRR@10 (mean, per seed)")
    for (weight, least), values in sorted(scores.items(), key=lambda i: -statistics.mean(i[1])):
        per_seed = " ".join(f"{v:.4f}" for v in values)
        print(f"{weight!s:<7} {least:<13} {statistics.mean(values):.4f}  {per_seed}")


if __name__ == "__main__":
    main()
