"""`twotower eval`: every system on the same queries and qrels, one table.

Systems:
- ``rnn``: the version's two-tower RNN, searched through its own Faiss shards (as served);
- ``bm25``: bm25s over the whole corpus with the dev-tuned k1/b;
- ``meanpool``: the seed's architecture (mean of word2vec vectors + projection layers), trained
  with the same data and losses, stored in the version under ``ablations/meanpool/``;
- ``hybrid``: score fusion of ``rnn`` and ``bm25`` (:mod:`training.fusion`), dense weight
  ``hybrid_dense_weight``.
"""

from __future__ import annotations

from pathlib import Path

from training import datasets
from training.bm25 import BM25Index
from training.evaluation.metrics import COLUMNS, evaluate_run
from training.evaluation.runs import (
    dense_run,
    exact_dense_run,
    hybrid_run,
    write_trec_run,
)
from training.version import indexed_collection

SYSTEMS = ("rnn", "bm25", "meanpool", "hybrid")
ABLATION_DIR = "ablations/meanpool"
DEPTH = 100


def parse_systems(text: str) -> list[str]:
    systems = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown or not systems:
        raise ValueError(f"unknown system(s) {unknown or text!r}; choose from {', '.join(SYSTEMS)}")
    return systems


def resolve_version(settings, version: str | None) -> Path:
    """A local version folder as given, else a verified copy of a stored version (or LATEST)."""
    if version and Path(version).is_dir():
        return Path(version)
    if version and ("/" in version or version.startswith(".")):
        raise ValueError(f"{version} is not a version folder")
    from urllib3.exceptions import HTTPError

    from cluster.artifacts import ArtifactStore

    try:
        store = ArtifactStore.from_settings(settings)
        version = version or store.latest()
    except HTTPError as err:
        raise ValueError(
            f"cannot reach the artifact store at {settings.s3_address} ({err.__class__.__name__});"
            " start it with `twotower up --services-only` or pass a local --version folder"
        ) from None
    if version is None:
        raise ValueError("the artifact store has no version yet: run `twotower train` first")
    return store.download(version)


def missing_systems(version_dir: Path, systems: list[str]) -> dict[str, str]:
    """{system: why} for the requested systems this version cannot be ranked with."""
    if "meanpool" in systems and not (Path(version_dir) / ABLATION_DIR / "weights.pt").exists():
        return {
            "meanpool": f"version {Path(version_dir).name} holds no meanpool ablation "
            "(it was trained with ablation=false, or made by the learning loop)"
        }
    return {}


def compare(
    version_dir: Path,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    systems: list[str],
    run_out: Path | None = None,
    *,
    hybrid_weight: float,
) -> dict[str, dict[str, float]]:
    """{system: {column: value}} for each requested system, in the given order; a system the
    version cannot rank with (:func:`missing_systems`) is a ValueError."""
    missing = missing_systems(version_dir, systems)
    if missing:
        raise ValueError("; ".join(missing.values()))
    if not queries:
        raise ValueError("no queries to evaluate")
    runs: dict[str, dict] = {}

    def run_of(system: str) -> dict:
        if system in runs:
            return runs[system]
        if system == "rnn":
            runs[system] = dense_run(version_dir, queries, DEPTH)
        elif system == "bm25":
            collection = indexed_collection(version_dir)  # the version's own corpus
            runs[system] = BM25Index.build(collection.ids, collection.texts).run(queries, DEPTH)
        elif system == "meanpool":
            runs[system] = exact_dense_run(Path(version_dir) / ABLATION_DIR, queries, DEPTH)
        else:
            runs[system] = hybrid_run(run_of("rnn"), run_of("bm25"), hybrid_weight)
        return runs[system]

    table = {}
    for system in systems:
        run = run_of(system)
        table[system] = evaluate_run(run, qrels)
        if run_out is not None:
            write_trec_run(run, Path(run_out) / f"{system}.trec", tag=system)
    return table


def format_table(table: dict[str, dict[str, float]]) -> str:
    lines = ["| system | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for system, row in table.items():
        lines.append(f"| {system} | " + " | ".join(f"{row[c]:.3f}" for c in COLUMNS) + " |")
    return "\n".join(lines)


def load_eval_files(queries_file: Path, qrels_file: Path):
    for path in (queries_file, qrels_file):
        if not Path(path).is_file():
            raise ValueError(f"{path} does not exist")
    queries = datasets.read_queries(queries_file)
    qrels = datasets.read_qrels(qrels_file)
    judged = {q for q, docs in qrels.items() if any(r > 0 for r in docs.values())}
    if not judged & set(queries):
        raise ValueError(f"no query of {queries_file} has a relevant judgment in {qrels_file}")
    return queries, qrels
