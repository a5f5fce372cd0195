"""Query-encoding latency of a version on one core (a benchmark that prints numbers).

    .venv/bin/python -m experiments.encoding_latency VERSION_DIR [--n 500]

Encodes dev queries one at a time (batch of 1, as an interactive search does) with
``torch.set_num_threads(1)`` and prints the median and 95th percentile in milliseconds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from training import datasets
from training.model import QueryEncoder


def query_latency_ms(version_dir, n: int = 500) -> dict[str, float]:
    torch.set_num_threads(1)
    encoder = QueryEncoder.load(version_dir)
    queries = list(datasets.load_queries("dev").values())
    queries = (queries * (n // len(queries) + 1))[:n]
    encoder.encode(queries[:20])  # warm-up
    times = []
    for query in queries:
        started = time.perf_counter()
        encoder.encode([query])
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95)), "n": n}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("version_dir")
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()
    print(query_latency_ms(args.version_dir, args.n))
