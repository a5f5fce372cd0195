"""What the log store writes: validated records with client-made ids and timestamps.

Hostile text policy (the log store's decision, enforced here, so every writer behaves alike):
- Text longer than its limit (queries: 10,000 characters) is refused with a ValueError.
- NUL characters are replaced by U+FFFD: PostgreSQL `text` cannot hold NUL at all.
- Lone surrogates (what invalid UTF-8 decodes to with `surrogateescape`) are replaced by
  U+FFFD: they cannot be encoded as UTF-8, so they could never reach the database.
- Everything else, including quotes, `;`, `--` and other SQL metacharacters, is stored
  verbatim: every statement is parameterised.
The id and time are fixed when the record is made, so a record replayed from the disk buffer
keeps both, and is never inserted twice.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

MAX_QUERY_CHARS = 10_000
MAX_LABEL_CHARS = 256  # session ids, model versions, modes
MAX_RESULTS = 1_000
MAX_DOC_ID_CHARS = 256


def _legacy_pid(value):
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


# A document id. Records written before documents had string ids name it `pid`, an integer:
# a disk buffer of such records still replays.
DocId = Annotated[
    str,
    BeforeValidator(_legacy_pid),
    Field(
        validation_alias=AliasChoices("doc_id", "pid"), min_length=1, max_length=MAX_DOC_ID_CHARS
    ),
]
FEEDBACK_KINDS = ("click", "relevant", "not_relevant")
_SURROGATES = re.compile("[\ud800-\udfff]")


def clean_text(value: str, field: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string, not {type(value).__name__}")
    if len(value) > max_chars:
        raise ValueError(f"{field} has {len(value)} characters; at most {max_chars} are stored")
    return _SURROGATES.sub("\ufffd", value.replace("\x00", "\ufffd"))


def _now() -> datetime:
    return datetime.now(UTC)


def client_id(address: str) -> str:
    """What the log stores of a client's address: a short hash, enough to tell clients apart
    (the click memory's per-client limit) without keeping the address. Pseudonymous, not
    anonymous: an IPv4 hash can be reversed by trying every address."""
    return hashlib.blake2b(address.encode("utf-8", "replace"), digest_size=8).hexdigest()


class ResultItem(BaseModel):
    """One result as shown to the user."""

    model_config = ConfigDict(frozen=True)

    doc_id: DocId
    rank: int = Field(ge=1)
    score: float

    @field_validator("score")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("score must be a finite number")
        return value


class SearchRecord(BaseModel):
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    created_at: datetime = Field(default_factory=_now)
    session_id: str | None = None
    client: str | None = None  # client_id() of the address it came from
    query: str
    model_version: str | None = None
    mode: str = "dense"
    latency_ms: float | None = None
    results: list[ResultItem] = Field(default_factory=list, max_length=MAX_RESULTS)

    @field_validator("query", mode="before")
    @classmethod
    def _query(cls, value):
        return clean_text(value, "query", MAX_QUERY_CHARS)

    @field_validator("session_id", "client", "model_version", "mode", mode="before")
    @classmethod
    def _labels(cls, value, info):
        return None if value is None else clean_text(value, info.field_name, MAX_LABEL_CHARS)

    @field_validator("latency_ms")
    @classmethod
    def _latency(cls, value):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError("latency_ms must be a finite, non-negative number")
        return value


class FeedbackRecord(BaseModel):
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    search_id: uuid.UUID
    doc_id: DocId
    kind: Literal["click", "relevant", "not_relevant"]
    rank: int | None = Field(default=None, ge=1)  # None: looked up from the search's results
    created_at: datetime = Field(default_factory=_now)
