"""``python -m learning [--force]``: one run in this process; the result is printed
as JSON on the last stdout line (the scheduler reads it). Exit code 0 whatever the outcome,
except when the run itself crashed."""

from __future__ import annotations

import argparse
import json
import logging

from cluster.config import get_settings
from learning.job import run_once


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m learning")
    parser.add_argument("--force", action="store_true", help="ignore reinforce_min_events")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = run_once(get_settings(), force=args.force)
    print(json.dumps(result.to_dict(), default=str), flush=True)


if __name__ == "__main__":
    main()
