"""The learning loop: search and click logs -> gated fine-tune -> rollout (docs/learning-loop.md).

``run_once(settings) -> RunResult`` is the entry point; ``start_scheduler(settings)`` starts the
periodic schedule on the connected Ray cluster."""

from __future__ import annotations


def __getattr__(name: str):  # lazy: importing the package must not pull in torch or Ray
    if name in ("run_once", "RunResult"):
        from learning import job

        return getattr(job, name)
    if name in ("start_scheduler", "stop_scheduler"):
        from learning import scheduler

        return getattr(scheduler, name)
    raise AttributeError(name)


__all__ = ["RunResult", "run_once", "start_scheduler", "stop_scheduler"]
