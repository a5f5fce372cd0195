"""The HTTP API's request, response and error models: what FastAPI validates and what
``/openapi.json`` publishes, so the schema states the same bounds the ingress enforces.

Bounds come from the settings when the module is imported (in a replica: its environment).
Some checks stay in the ingress because their messages say more than a schema error would
(an empty query, an over-long one); the schema still carries them (``pattern``,
``maxLength``), so a generated request the schema calls valid is one the API accepts.

No ``from __future__ import annotations``: FastAPI must see the models as real classes.
"""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from cluster.config import get_settings
from cluster.logstore.records import MAX_DOC_ID_CHARS

_settings = get_settings()
MAX_K = _settings.max_k
MAX_QUERY_CHARS = _settings.max_query_chars
MAX_LIMIT = 200  # rows of /versions and /runs

# Every character Python's str.isspace() or JSON Schema's (ECMA-262) \s calls whitespace:
# the ingress strips exactly these, and the schema's pattern needs one character outside them.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
# \uXXXX escapes: ECMA-262, Python's re and Rust's regex all read them alike.
NOT_BLANK = "[^" + "".join(f"\\u{ord(ch):04x}" for ch in WHITESPACE) + "]"

# (low, high) of each bounded integer field, for the error message that names both.
BOUNDS = {"k": (1, MAX_K), "limit": (1, MAX_LIMIT)}


def _whole_number(value: Any) -> Any:
    """JSON has one number type, and JSON Schema calls 15.0 the integer 15: take it as 15.
    Anything else goes on to strict validation, which refuses "15" and true."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_whole_number)]


class ErrorBody(BaseModel):
    """Every 4xx and 503 answer."""

    detail: str = Field(description="What went wrong, as one sentence.")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body is not UTF-8 JSON, or is too deep."},
    401: {"model": ErrorBody, "description": "The route needs a token and none was sent."},
    403: {"model": ErrorBody, "description": "The token sent is not the right one."},
    404: {"model": ErrorBody, "description": "Unknown route, search_id, or doc_id of that search."},
    413: {"model": ErrorBody, "description": "The body is larger than the limit."},
    415: {"model": ErrorBody, "description": "The body is not sent as application/json."},
    422: {
        "model": ErrorBody,
        "description": "A field is missing, of the wrong type or out of range.",
    },
    429: {"model": ErrorBody, "description": "Too much feedback from this client or session."},
    503: {"model": ErrorBody, "description": "A service the API needs is down; says which."},
}

# A search's answer names what feedback may refer to (OpenAPI links: clients and schema-driven
# testers such as schemathesis can follow them from a search to its feedback).
SEARCH_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    200: {
        "links": {
            "Feedback": {
                "operationId": "feedback",
                "requestBody": {
                    "search_id": "$response.body#/search_id",
                    "doc_id": "$response.body#/results/0/doc_id",
                    "kind": "click",
                },
            }
        }
    },
}


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(
        description=f"What to search for: not blank, at most {MAX_QUERY_CHARS} characters.",
        json_schema_extra={"minLength": 1, "maxLength": MAX_QUERY_CHARS, "pattern": NOT_BLANK},
    )
    k: JsonInt = Field(10, ge=1, le=MAX_K, strict=True, description="How many results.")
    mode: Literal["dense", "hybrid"] | None = Field(
        None,
        description="hybrid (dense + BM25, weighted score fusion) or dense (the two-tower "
        "model alone); default: the server's default_mode setting (hybrid unless configured).",
    )
    session_id: str | None = Field(None, max_length=256)


class SearchResult(BaseModel):
    doc_id: str = Field(description="The document's id, as its corpus names it.")
    rank: int
    score: float = Field(
        description="Compares only within one answer; when click_memory_moved or any memory "
        "is set, the blend of the ranking's score and the click memory's pull."
    )
    text: str
    memory: float | None = Field(
        None,
        description="The click memory's pull on this result, in (-1, 1) (up when positive); "
        "null when the memory knows too little of it for this query.",
    )


class SearchResponse(BaseModel):
    search_id: str
    version: str
    latency_ms: float
    mode: Literal["dense", "hybrid"] = Field(description="The mode that answered.")
    results: list[SearchResult]
    click_memory_moved: bool = Field(
        False,
        description="Whether the click memory changed which results are shown or their order.",
    )


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    search_id: uuid.UUID
    doc_id: str = Field(
        min_length=1, max_length=MAX_DOC_ID_CHARS, description="A doc_id that search showed."
    )
    kind: Literal["click", "relevant", "not_relevant"]


class FeedbackResponse(BaseModel):
    ok: bool


class HealthResponse(BaseModel):
    status: Literal["ok"]
    version: str


class CorpusInfo(BaseModel):
    name: str
    snapshot: str | None = None
    count: int | None = Field(None, description="How many documents the live version indexes.")


class VersionResponse(BaseModel):
    version: str
    created_at: str | None
    parent: str | None
    metrics: dict[str, Any]
    shards: int
    corpus: CorpusInfo | None = Field(
        None, description="The corpus the live version searches (None: its manifest predates it)."
    )


class VersionRow(BaseModel):
    version: str
    live: bool
    created_at: str | None
    parent: str | None
    metrics: dict[str, Any]


class VersionsResponse(BaseModel):
    live: str | None
    versions: list[VersionRow]


class RunsResponse(BaseModel):
    runs: list[dict[str, Any]]


class ClickMemoryIgnored(BaseModel):
    capped: int = Field(description="Events of a session that had already given its cap.")
    unshown: int = Field(description="Events on a result their search did not show.")
    client: int = Field(description="Sessions of a client that had already given its share.")


class ClickMemorySettings(BaseModel):
    weight: float
    min_sessions: int
    half_life_s: float
    session_cap: float
    client_sessions: int
    propensities: list[float]
    scale: float
    depth: int


class ClickMemoryStatus(BaseModel):
    """The click memory as the answering replica holds it (docs/click-memory.md)."""

    enabled: bool
    queries: int = Field(description="Queries whose ranking the memory can move now.")
    documents: int = Field(description="(query, document) pairs with enough sessions to act.")
    folded: int = Field(description="Feedback events folded into the memory, in all.")
    ignored: ClickMemoryIgnored = Field(description="Feedback events it did not count, by reason.")
    watermark: int = Field(description="The last feedback id folded.")
    folded_at: datetime | None = Field(description="When the memory last folded feedback.")
    polled_at: datetime | None = Field(description="When this replica last read the memory.")
    settings: ClickMemorySettings


class DocumentIn(BaseModel):
    """A document to write: its id in the corpus, and its text (what is searched)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=MAX_DOC_ID_CHARS)
    text: str = Field(min_length=1, max_length=_settings.corpus_max_text_chars)
    title: str | None = Field(None, max_length=_settings.corpus_max_text_chars)
    url: str | None = Field(None, max_length=2048)
    metadata: dict[str, Any] | None = None


class DocumentsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: list[DocumentIn] = Field(
        min_length=1,
        max_length=_settings.documents_max_batch,
        description="Upserted as one batch: all of them, or (on any error) none.",
    )


class DocumentsWritten(BaseModel):
    corpus: str
    written: int
    seq: int = Field(description="The document log's sequence number of the last write.")


class DocumentDeleted(BaseModel):
    corpus: str
    deleted: str
    seq: int


class DocumentOut(BaseModel):
    id: str
    text: str = Field(description="The searched text (title and text, as encoded).")
    title: str | None = None
    url: str | None = None
    metadata: dict[str, Any] | None = None
    source: Literal["corpus", "api"] = Field(
        description="corpus: indexed by the live version; api: written since it was built."
    )
