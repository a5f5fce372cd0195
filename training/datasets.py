"""Load the MS MARCO subset shipped (gzipped) in ``training/data/msmarco``.

Every loader returns plain Python containers so any caller (trainer, indexer, evaluator,
tests) can slice them without a framework. Evaluation sets and training sets are loaded by
different functions on purpose: nothing here ever mixes dev/DL19/test/DL20 into training data.
"""

from __future__ import annotations

import csv
import gzip
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cluster.corpora.documents import SHIPPED_CORPUS
from training.text import query_key

DATA_DIR = Path(__file__).resolve().parent / "data" / "msmarco"
EVAL_SETS = ("dev", "dl19", "test", "dl20")  # never trained on
LABELLED_EVAL_SETS = ("dev", "dl19")  # test and dl20 ship without qrels

csv.field_size_limit(sys.maxsize)


def _rows(path: Path) -> list[list[str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as handle:
        return [row for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if row]


def _data_file(name: str, data_dir: Path | None) -> Path:
    path = (data_dir or DATA_DIR) / f"{name}.gz"
    if not path.exists():
        raise FileNotFoundError(f"missing data file {path} (see {DATA_DIR / 'README.md'})")
    return path


@dataclass(frozen=True)
class Collection:
    """The searchable corpus: ``ids[i]`` is the document id of ``texts[i]`` (MS MARCO pids
    are ids like any other: strings)."""

    ids: list[str]
    texts: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def text_of(self) -> dict[str, str]:
        return dict(zip(self.ids, self.texts, strict=True))


def shipped_corpus() -> dict:
    """How a version's manifest names the shipped collection (an imported corpus names its
    own snapshot)."""
    return {"name": SHIPPED_CORPUS, "snapshot": "shipped", "count": len(load_collection())}


@lru_cache(maxsize=2)
def load_collection(data_dir: Path | None = None) -> Collection:
    rows = _rows(_data_file("collection.tsv", data_dir))
    return Collection(ids=[r[0] for r in rows], texts=[r[1] for r in rows])


def judged_slice(passages: int) -> Collection:
    """A small corpus on which dev retrieval still means something: every passage judged for
    a dev query, then the collection in order, up to ``passages`` (the test fixture's version,
    experiments on small corpora)."""
    full = load_collection()
    wanted = {doc_id for docs in load_qrels("dev").values() for doc_id in docs}
    rows = [i for i, doc_id in enumerate(full.ids) if doc_id in wanted]
    taken = set(rows)
    rows += [i for i in range(len(full)) if i not in taken][: max(0, passages - len(rows))]
    rows = sorted(rows[:passages])
    return Collection([full.ids[i] for i in rows], [full.texts[i] for i in rows])


def read_queries(path: Path) -> dict[str, str]:
    """A TREC-style ``qid<TAB>query`` file (gzipped or not) -> {qid: query}."""
    return {r[0]: r[1] for r in _rows(Path(path))}


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """A TREC qrels file ``qid 0 doc_id rel`` (tabs or spaces) -> {qid: {doc_id: rel}}."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    qrels: dict[str, dict[str, int]] = {}
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise ValueError(f"{path}:{line_no}: expected 'qid 0 doc_id rel', got {line!r}")
            qrels.setdefault(parts[0], {})[parts[2]] = int(parts[3])
    return qrels


def load_queries(split: str, data_dir: Path | None = None) -> dict[str, str]:
    """Evaluation queries of one split: dev, dl19, test or dl20."""
    if split not in EVAL_SETS:
        raise ValueError(f"unknown query split {split!r}; expected one of {EVAL_SETS}")
    return read_queries(_data_file(f"queries.{split}.tsv", data_dir))


def load_qrels(split: str, data_dir: Path | None = None) -> dict[str, dict[str, int]]:
    if split not in LABELLED_EVAL_SETS:
        raise ValueError(f"no judgments ship for {split!r}; labelled sets: {LABELLED_EVAL_SETS}")
    return read_qrels(_data_file(f"qrels.{split}.tsv", data_dir))


@dataclass(frozen=True)
class TrainPair:
    qid: str
    query: str
    positive: str  # passage text (title-prefixed, not in the corpus)


@dataclass(frozen=True)
class TrainTriple:
    query: str
    positive: str
    negative: str


@lru_cache(maxsize=2)
def load_train_pairs(data_dir: Path | None = None) -> list[TrainPair]:
    return [TrainPair(r[0], r[1], r[2]) for r in _rows(_data_file("train.pairs.tsv", data_dir))]


@lru_cache(maxsize=2)
def load_train_triples(data_dir: Path | None = None) -> list[TrainTriple]:
    return [TrainTriple(r[0], r[1], r[2]) for r in _rows(_data_file("train.triples.tsv", data_dir))]


def training_queries(data_dir: Path | None = None) -> list[str]:
    """Every distinct training query text (pairs + triples), in a stable order."""
    seen: dict[str, None] = {}
    for pair in load_train_pairs(data_dir):
        seen.setdefault(pair.query, None)
    for triple in load_train_triples(data_dir):
        seen.setdefault(triple.query, None)
    return list(seen)


@lru_cache(maxsize=2)
def evaluation_query_texts(data_dir: Path | None = None) -> frozenset[str]:
    """Normalised texts of every evaluation query: the guard that keeps them out of training."""
    texts = set()
    for split in EVAL_SETS:
        texts.update(query_key(q) for q in load_queries(split, data_dir).values())
    return frozenset(texts)
