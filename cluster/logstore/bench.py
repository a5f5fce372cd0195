"""What durability costs a log call: `log_search` p50/p99 with and without the fsync.

    python -m cluster.logstore.bench [-n 2000]

Two writers on private buffer folders, `log_fsync` on and off, take turns in blocks of calls
(so a busy moment of the machine hits both alike), each call timed on the caller's side, as
the ingress's event loop pays it, with a short pause between calls so that the writer threads
drain meanwhile, as they do under serving load. The records go to the configured PostgreSQL,
as searches of one `log-bench-…` session that no feedback points at, so the learning loop
never reads them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from cluster.config import Settings, get_settings
from cluster.logstore.records import ResultItem, SearchRecord
from cluster.logstore.writer import LogWriter

BLOCK = 100  # calls per writer per turn
PAUSE_S = 0.001  # between calls
MODES = {"fsync (default)": True, "no fsync": False}


def _search(session: str, i: int) -> SearchRecord:
    """About the size of a served search's record (ten results)."""
    results = [ResultItem(doc_id=str(1000 + r), rank=r + 1, score=1.0 - r / 20) for r in range(10)]
    return SearchRecord(
        session_id=session,
        query=f"bench query number {i}",
        model_version="bench",
        mode="hybrid",
        latency_ms=10.0,
        results=results,
    )


def measure(settings: Settings, calls: int, folder: Path) -> dict[str, list[float]]:
    """Seconds per `log_search` call, by mode; `calls` of each."""
    writers = {
        mode: LogWriter(settings.model_copy(update={"log_fsync": on}), buffer_dir=folder / str(i))
        for i, (mode, on) in enumerate(MODES.items())
    }
    session = f"log-bench-{uuid.uuid4().hex[:8]}"
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    try:
        while len(times[next(iter(MODES))]) < calls:
            for mode, writer in writers.items():
                for _ in range(min(BLOCK, calls - len(times[mode]))):
                    record = _search(session, len(times[mode]))
                    started = time.perf_counter()
                    writer.log_search(record)
                    times[mode].append(time.perf_counter() - started)
                    time.sleep(PAUSE_S)
        for writer in writers.values():
            writer.flush(60)
    finally:
        for writer in writers.values():
            writer.close()
    return times


def table(times: dict[str, list[float]]) -> str:
    lines = ["| log call | calls | p50 ms | p99 ms | max ms | mean ms |", "|---" * 6 + "|"]
    for mode, seconds in times.items():
        ms = sorted(s * 1000 for s in seconds)
        p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        lines.append(f"| {mode} | {len(ms)} | {statistics.median(ms):.3f} | {p99:.3f} | "
                     f"{ms[-1]:.3f} | {statistics.fmean(ms):.3f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--calls", type=int, default=2000, help="calls per mode")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tt-log-bench-") as folder:
        print(table(measure(get_settings(), args.calls, Path(folder))))


if __name__ == "__main__":
    main()
