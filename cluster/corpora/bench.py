"""How fast `twotower corpus import` reads, validates and stores a big file, in how much memory.

    python -m cluster.corpora.bench [--rows 1000000] [--words 60] [--use-settings]

Writes a synthetic JSONL file of `rows` passages (~`words` Zipf-distributed random words each,
integer ids, a title on every other row) to a temporary folder, imports it, then reads it back
with `documents()` (download, checksum, parse), as training will. Prints rows/s and the peak
RSS of this process (ru_maxrss: the import must stay bounded, whatever the file's size).

By default the store is a SeaweedFS of its own (temporary folder, free loopback ports), so
the bench touches nothing of a running stack; --use-settings imports into the configured one.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import resource
import secrets
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from cluster.config import Settings, get_settings
from cluster.corpora.store import CorpusStore

VOCABULARY = 30_000
SYLLABLES = [c + v for c in "bcdfghklmnprstvwz" for v in "aeiou"] + ["th", "st", "ng", "er"]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_s() -> float:
    """This process's CPU time, all threads: on a busy machine, steadier than the wall clock."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_corpus(path: Path, rows: int, words: int, seed: int = 13) -> None:
    """`rows` JSONL passages, streamed: this process never holds more than one."""
    rng = random.Random(seed)
    vocab = list(
        {"".join(rng.choices(SYLLABLES, k=rng.randint(1, 4))) for _ in range(VOCABULARY * 2)}
    )[:VOCABULARY]
    cum_weights = list(itertools.accumulate(1 / rank for rank in range(1, len(vocab) + 1)))
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            n = rng.randint(words // 2, words * 3 // 2)
            text = " ".join(rng.choices(vocab, cum_weights=cum_weights, k=n))
            record = {"id": 1_000_000 + i, "text": text.capitalize() + "."}
            if i % 2:
                record["title"] = " ".join(rng.choices(vocab, cum_weights=cum_weights, k=4))
            f.write(json.dumps(record) + "\n")


def measure(settings: Settings, rows: int, words: int, folder: Path) -> dict[str, float]:
    """Write, import and read back; the numbers of each step."""
    source = folder / "bench.jsonl"
    started = time.perf_counter()
    write_corpus(source, rows, words)
    result = {
        "rows": rows,
        "write_s": time.perf_counter() - started,
        "source_mb": source.stat().st_size / 1e6,
        "rss_after_write_mib": peak_rss_mib(),
    }
    store = CorpusStore.from_settings(settings)
    cpu = cpu_s()
    report = store.import_file(source, "corpus-bench", progress=False)
    cpu = cpu_s() - cpu
    assert report.snapshot is not None and report.count == rows, report.describe()
    entry = store.manifest("corpus-bench", report.snapshot)["files"]["documents.jsonl.gz"]
    result |= {
        "import_s": report.seconds,
        "import_cpu_s": cpu,
        "import_rows_per_s": rows / report.seconds,
        "import_mb_per_s": result["source_mb"] / report.seconds,
        "stored_mb": entry["size"] / 1e6,
        "rss_after_import_mib": peak_rss_mib(),
    }
    started, cpu = time.perf_counter(), cpu_s()
    count = sum(1 for _ in store.documents("corpus-bench", report.snapshot))
    seconds, cpu = time.perf_counter() - started, cpu_s() - cpu
    assert count == rows
    result |= {
        "read_s": seconds,
        "read_cpu_s": cpu,
        "read_rows_per_s": rows / seconds,
        "rss_after_read_mib": peak_rss_mib(),
    }
    return result


def describe(r: dict[str, float]) -> str:
    return "\n".join(
        [
            f"rows               {r['rows']:,} (~{r['source_mb'] * 1e6 / r['rows']:.0f} B each)",
            f"source JSONL       {r['source_mb']:.1f} MB, written in {r['write_s']:.1f} s",
            f"import             {r['import_s']:.1f} s = {r['import_rows_per_s']:,.0f} rows/s "
            f"({r['import_mb_per_s']:.1f} MB/s), {r['import_cpu_s']:.1f} s CPU; "
            f"stored {r['stored_mb']:.1f} MB gzipped",
            f"read back          {r['read_s']:.1f} s = {r['read_rows_per_s']:,.0f} rows/s, "
            f"{r['read_cpu_s']:.1f} s CPU (download, verify, parse)",
            f"peak RSS (MiB)     {r['rss_after_write_mib']:.0f} after writing the file, "
            f"{r['rss_after_import_mib']:.0f} after the import, "
            f"{r['rss_after_read_mib']:.0f} after reading back",
        ]
    )


def _own_seaweedfs(folder: Path):
    from cluster.processes import free_port
    from cluster.servers import SeaweedS3

    return SeaweedS3(
        folder / "seaweedfs",
        s3_port=free_port(),
        access_key="bench-" + secrets.token_hex(4),
        secret_key=secrets.token_hex(16),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--words", type=int, default=60, help="mean words per passage")
    parser.add_argument(
        "--use-settings", action="store_true", help="import into the configured store"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tt-corpus-bench-") as tmp:
        folder = Path(tmp)
        settings = get_settings().model_copy(update={"model_cache_dir": folder / "cache"})
        server = None
        if not args.use_settings:
            server = _own_seaweedfs(folder)
            server.start()
            settings = settings.model_copy(
                update={
                    "s3_endpoint": server.address,
                    "s3_access_key": SecretStr(server.access_key),
                    "s3_secret_key": SecretStr(server.secret_key),
                    "s3_bucket": "corpus-bench",
                }
            )
        try:
            print(describe(measure(settings, args.rows, args.words, folder)))
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
