"""One document of a user's corpus, and its stored form: one compact JSON line.

The stored form is what training and indexing read back, so it is kept minimal and stable:
fields that are None are left out, non-ASCII text is kept as UTF-8 (not \\u escapes, which
would double the size of most non-English corpora), and the key order is fixed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

FIELDS = ("id", "text", "title", "url", "metadata")
# One encoder for all: json.dumps(..., ensure_ascii=False) builds a new one at every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


# The corpus name of the MS MARCO subset shipped in training/data/msmarco: what versions that
# name no corpus index, and where API writes to them go.
SHIPPED_CORPUS = "msmarco"


@dataclass(frozen=True)
class Document:
    """A passage the search finds. `id` is always a string (numeric ids arrive as "159911"),
    so ids from CSV, JSON and Parquet compare equal whatever the source's types were."""

    id: str
    text: str
    title: str | None = None
    url: str | None = None
    metadata: dict[str, Any] | None = None

    @property
    def passage(self) -> str:
        """What the model encodes: the title (when there is one) belongs to the passage."""
        return f"{self.title} {self.text}" if self.title else self.text

    def to_json(self) -> str:
        """One line of JSON, no newline; None fields omitted."""
        record = {"id": self.id, "text": self.text}
        for name in ("title", "url", "metadata"):
            value = getattr(self, name)
            if value is not None:
                record[name] = value
        return _ENCODER.encode(record)

    @classmethod
    def from_json(cls, line: str | bytes) -> Document:
        """The inverse of `to_json` (for stored, already validated lines)."""
        record = json.loads(line)
        return cls(**{name: record.get(name) for name in FIELDS})
