"""Users' own documents: read any of a few file formats, validate every row, and store the
result as an immutable, checksummed corpus snapshot in S3 (docs/corpora.md).

Training reads a corpus back with `CorpusStore.from_settings(s).documents(name)`.
"""

from cluster.corpora.documents import Document
from cluster.corpora.readers import FORMATS, FieldMap, detect_format, read_documents
from cluster.corpora.store import CorpusNotFound, CorpusStore, ImportReport, check_name
from cluster.corpora.validation import (
    KINDS,
    CorpusError,
    CorpusFileError,
    InvalidCorpusName,
    RowProblem,
    Validator,
)

__all__ = [
    "FORMATS",
    "KINDS",
    "CorpusError",
    "CorpusFileError",
    "CorpusNotFound",
    "CorpusStore",
    "Document",
    "FieldMap",
    "ImportReport",
    "InvalidCorpusName",
    "RowProblem",
    "Validator",
    "check_name",
    "detect_format",
    "read_documents",
]
