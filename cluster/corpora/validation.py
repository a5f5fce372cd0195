"""What can be wrong with a row of a user's file, and the checks that find it.

An import is all or nothing by default, so a user learns about every bad row at once: each
problem names its line (the file's physical line, as an editor shows it; the row number for
Parquet) and one of a few kinds, and the CLI counts them per kind. One row gets one problem,
the first found, in the order of `KINDS`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

import numpy as np

from cluster.artifacts import ArtifactError
from cluster.config import Settings
from cluster.corpora.documents import Document

KINDS = (
    "invalid_utf8",  # bytes that are not UTF-8 (or JSON escapes of lone surrogates)
    "bad_json",  # a JSONL line that is not one JSON object
    "bad_row",  # wrong number of columns, a field of the wrong type, metadata not an object
    "missing_field",  # no id or no text at all
    "bad_id",  # empty, too long, control characters, or neither a string nor an integer
    "empty_text",  # empty or whitespace only
    "text_too_long",  # over settings.corpus_max_text_chars
    "duplicate_id",  # the id of an earlier accepted row
)
MAX_LISTED_PROBLEMS = 10_000  # beyond this only the counts per kind grow: memory stays bounded
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class CorpusError(ArtifactError):
    """Base class for corpus errors (an ArtifactError: the corpora share the model bucket)."""


class CorpusFileError(CorpusError, ValueError):
    """The file as a whole cannot be imported: missing, unknown format, no id/text column."""


class InvalidCorpusName(CorpusError, ValueError):
    pass


@dataclass(frozen=True)
class RowProblem:
    line: int
    kind: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.kind}: {self.message}"


def short(value: object, limit: int = 60) -> str:
    """A repr that fits on one line of a report."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _encodable(text: str) -> bool:
    """False for a str holding lone surrogates (JSON "\\ud800"), which UTF-8 cannot store."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class IdSet:
    """The ids accepted so far, as 16-byte blake2b digests in sorted numpy runs.

    A Python set of digests costs several times the digest's size per id (measured in
    docs/results/own-documents.md); here it is 16 bytes plus a small set of recent digests.
    New digests collect in that set, which becomes a sorted run when full; runs of similar
    size are merged (as in an LSM tree), so a lookup is a binary search in a handful of runs,
    done for a whole batch at once. With 128-bit digests a false "duplicate" needs ~2^64 ids:
    it does not happen.
    """

    def __init__(self, buffer: int = 1 << 16):
        self.buffer = buffer
        self._recent: set[bytes] = set()
        self._runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._recent) + sum(len(run) for run in self._runs)

    @staticmethod
    def digest(doc_id: str) -> bytes:
        return hashlib.blake2b(doc_id.encode("utf-8"), digest_size=16).digest()

    def add_all(self, digests: list[bytes]) -> list[bool]:
        """Add each digest in order; True where it was new, False where it was seen already
        (earlier in the same list included)."""
        if not digests:
            return []
        batch = np.array(digests, dtype="S16")
        seen = np.zeros(len(batch), dtype=bool)
        for run in self._runs:
            at = np.minimum(np.searchsorted(run, batch), len(run) - 1)
            seen |= run[at] == batch
        fresh = []
        for digest, old in zip(digests, seen.tolist(), strict=True):
            new = not old and digest not in self._recent
            if new:
                self._recent.add(digest)
            fresh.append(new)
        if len(self._recent) >= self.buffer:
            self._flush()
        return fresh

    def _flush(self) -> None:
        self._runs.append(np.sort(np.array(list(self._recent), dtype="S16")))
        self._recent.clear()
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            last = self._runs.pop()
            self._runs[-1] = np.sort(np.concatenate([self._runs[-1], last]))


class Validator:
    """The row checks that need no neighbours, plus duplicate ids over the whole file."""

    def __init__(self, max_text_chars: int, max_id_chars: int, batch: int = 4096):
        self.max_text_chars = max_text_chars
        self.max_id_chars = max_id_chars
        self.batch = batch
        self.ids = IdSet()

    @classmethod
    def from_settings(cls, settings: Settings) -> Validator:
        return cls(settings.corpus_max_text_chars, settings.corpus_max_id_chars)

    def check(self, line: int, doc: Document) -> RowProblem | None:
        """The first problem of one document on its own, or None."""
        strings = [doc.id, doc.text, doc.title or "", doc.url or ""]
        if not all(_encodable(s) for s in strings) or (
            doc.metadata and not _encodable(json.dumps(doc.metadata, ensure_ascii=False))
        ):
            return RowProblem(line, "invalid_utf8", "a lone surrogate escape (\\ud800-\\udfff)")
        if not doc.id.strip():
            return RowProblem(line, "bad_id", "the id is empty")
        if len(doc.id) > self.max_id_chars:
            return RowProblem(
                line, "bad_id", f"the id has {len(doc.id)} characters (at most {self.max_id_chars})"
            )
        if CONTROL_CHARS.search(doc.id):
            return RowProblem(line, "bad_id", f"the id {short(doc.id)} holds control characters")
        if not doc.text.strip():
            return RowProblem(line, "empty_text", "the text is empty or only whitespace")
        if len(doc.text) > self.max_text_chars:
            return RowProblem(
                line,
                "text_too_long",
                f"the text has {len(doc.text)} characters (at most {self.max_text_chars}; "
                "split long documents into passages, or raise TWOTOWER_CORPUS_MAX_TEXT_CHARS)",
            )
        return None

    def validate(
        self, rows: Iterable[tuple[int, Document | RowProblem]]
    ) -> Iterator[tuple[int, Document | RowProblem]]:
        """The rows in order, each bad document replaced by its problem. Only accepted rows
        claim their id: after a bad row, a later row with the same id is not a duplicate."""
        rows = iter(rows)
        while chunk := list(islice(rows, self.batch)):
            checked: list[tuple[int, Document | RowProblem]] = [
                (line, item if isinstance(item, RowProblem) else self.check(line, item) or item)
                for line, item in chunk
            ]
            docs = [(i, item) for i, (_, item) in enumerate(checked) if isinstance(item, Document)]
            fresh = self.ids.add_all([IdSet.digest(doc.id) for _, doc in docs])
            for (i, doc), new in zip(docs, fresh, strict=True):
                if not new:
                    line = checked[i][0]
                    problem = f"the id {short(doc.id)} is already used by an earlier row"
                    checked[i] = (line, RowProblem(line, "duplicate_id", problem))
            yield from checked


class ProblemLog:
    """Every problem counted by kind, the first MAX_LISTED_PROBLEMS kept in full."""

    def __init__(self, limit: int = MAX_LISTED_PROBLEMS):
        self.limit = limit
        self.problems: list[RowProblem] = []
        self.counts: Counter[str] = Counter()

    def add(self, problem: RowProblem) -> None:
        self.counts[problem.kind] += 1
        if len(self.problems) < self.limit:
            self.problems.append(problem)

    def __len__(self) -> int:
        return sum(self.counts.values())


def describe_problems(problems: list[RowProblem], counts: dict[str, int], limit: int = 20) -> str:
    """The report a user reads: the first `limit` problems, then the count of each kind."""
    total = sum(counts.values())
    lines = [str(p) for p in problems[:limit]]
    if total > len(lines):
        lines.append(f"... and {total - len(lines)} more")
    by_kind = ", ".join(f"{kind} {counts[kind]}" for kind in KINDS if counts.get(kind))
    lines.append(f"{total} bad rows: {by_kind}")
    return "\n".join(lines)
