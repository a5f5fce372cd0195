"""The rules of the document routes: who may write or read, and what a batch may hold.

Writes need the API write token (``Authorization: Bearer <token>``): configured in settings,
else, in local mode, generated once into ``<state_dir>/secrets/api-write.token``. Searching is
open unless a read token is configured; then it needs the read token or the write token.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

from cluster.api_tokens import write_token
from cluster.config import Settings
from cluster.corpora.documents import Document
from cluster.corpora.validation import RowProblem, Validator
from deployments.api_models import DocumentIn


class Tokens:
    def __init__(self, settings: Settings):
        self.write = write_token(settings)
        read = settings.api_read_token
        self.read = None if read is None else read.get_secret_value()

    def require_write(self, request: Request) -> None:
        self._require(request, [self.write], "writing documents")

    def require_read(self, request: Request) -> None:
        if self.read is not None:
            self._require(request, [self.read, self.write], "searching")

    @staticmethod
    def _require(request: Request, accepted: list[str], what: str) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, sent = header.partition(" ")
        if scheme.lower() != "bearer" or not sent.strip():
            raise HTTPException(
                401,
                f"{what} needs a token: send `Authorization: Bearer <token>`",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not any(hmac.compare_digest(sent.strip().encode(), t.encode()) for t in accepted):
            raise HTTPException(403, f"the token sent is not the one for {what}")


def to_documents(batch: list[DocumentIn], settings: Settings) -> list[Document]:
    """The batch as documents, or a 422 naming the first bad one: a batch is written whole or
    not at all. The rules are an import's (cluster/corpora/validation.py), duplicates too."""
    rows = (
        (i, Document(item.id, item.text, item.title, item.url, item.metadata))
        for i, item in enumerate(batch)
    )
    documents = []
    for i, item in Validator.from_settings(settings).validate(rows):
        if isinstance(item, RowProblem):
            raise HTTPException(422, f"documents[{i}]: {item.message}")
        documents.append(item)
    return documents
