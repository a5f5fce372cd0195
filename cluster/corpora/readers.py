"""Stream a user's file as documents, one row at a time, whatever its size.

JSONL (.jsonl/.ndjson), CSV (.csv, RFC 4180 quoting) and TSV (.tsv, no quoting: a field holds
no tab or newline, as in MS MARCO's collection.tsv), each optionally gzipped, and Parquet.
Text formats are read as bytes and decoded one line at a time, so one bad byte costs its row
(an `invalid_utf8` problem with its line number), not the import. The CSV and TSV header names
the columns; which column is the id, the text, ... is a `FieldMap`. Other columns are ignored.

Each row becomes `(line, Document)` or `(line, RowProblem)`; the checks that need no parsing
(empty text, id rules, duplicates) are validation.py's.
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from cluster.corpora.documents import Document
from cluster.corpora.validation import CorpusFileError, RowProblem, short

FORMATS = ("jsonl", "csv", "tsv", "parquet")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}
SUFFIXES |= {".parquet": "parquet"}
GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"
# A line longer than this is reported and skipped unread, so a file without newlines (or a
# CSV with a runaway quote) cannot fill the memory. Far above any allowed text.
MAX_LINE_BYTES = 16 << 20
PARQUET_BATCH = 4096

Row = tuple[int, Document | RowProblem]
Lines = Iterator[tuple[int, bytes | None]]  # (line number, its bytes; None: too long)


@dataclass(frozen=True)
class FieldMap:
    """Which field (JSON key, CSV/TSV header, Parquet column) holds what."""

    id: str = "id"
    text: str = "text"
    title: str = "title"
    url: str = "url"
    metadata: str = "metadata"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def detect_format(path: Path, fmt: str | None = None) -> str:
    """`fmt` if given, else from the name: data.jsonl.gz -> jsonl."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise CorpusFileError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
        return fmt
    name = path.name.lower().removesuffix(".gz")
    for suffix, found in SUFFIXES.items():
        if name.endswith(suffix):
            return found
    raise CorpusFileError(
        f"cannot tell the format of {path.name} from its name "
        f"(.jsonl, .ndjson, .csv, .tsv, .parquet, each text format also .gz): pass --format"
    )


def read_documents(
    path: Path, fields: FieldMap = FieldMap(), fmt: str | None = None
) -> Iterator[Row]:
    """The rows of `path` in file order. A problem with the whole file (missing, no id or text
    column, a damaged gzip stream) raises CorpusFileError, here or while iterating."""
    path = Path(path)
    if not path.is_file():
        raise CorpusFileError(f"no such file: {path}")
    fmt = detect_format(path, fmt)
    if fmt == "parquet":
        return _parquet(path, fields)
    parse = {"jsonl": _jsonl, "csv": _csv, "tsv": _tsv}[fmt]
    return _text_rows(path, fields, parse)


# --------------------------------------------------------------------------- one record
def _string(line: int, name: str, value: Any) -> str | RowProblem:
    if isinstance(value, bytes):  # a Parquet binary column
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as err:
            return RowProblem(line, "invalid_utf8", f"field {name!r}: {err.reason}")
    if isinstance(value, str):
        return value
    return RowProblem(
        line, "bad_row", f"field {name!r} must be a string, not {type(value).__name__}"
    )


def _document(line: int, record: Mapping[str, Any], fields: FieldMap) -> Document | RowProblem:
    """A Document from one parsed record, or the first structural problem it has."""
    raw_id, raw_text = record.get(fields.id), record.get(fields.text)
    for name, value in ((fields.id, raw_id), (fields.text, raw_text)):
        if value is None:
            why = "is null" if name in record else "is missing"
            return RowProblem(line, "missing_field", f"field {name!r} {why}")
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        doc_id: str | RowProblem = str(raw_id)
    elif isinstance(raw_id, str | bytes):
        doc_id = _string(line, fields.id, raw_id)
    else:
        why = f"must be a string or an integer, not {type(raw_id).__name__} {short(raw_id)}"
        return RowProblem(line, "bad_id", f"field {fields.id!r} {why}")
    text = _string(line, fields.text, raw_text)
    optional: dict[str, str | None] = {}
    for key in ("title", "url"):
        name = getattr(fields, key)
        value = record.get(name)
        optional[key] = None if value in (None, "", b"") else _string(line, name, value)
    metadata = _metadata(line, record.get(fields.metadata), fields.metadata)
    for value in (doc_id, text, *optional.values(), metadata):
        if isinstance(value, RowProblem):
            return value
    return Document(doc_id, text, metadata=metadata, **optional)


def _metadata(line: int, value: Any, name: str) -> dict | None | RowProblem:
    """A JSON object: as such (JSONL, a Parquet struct or map) or as a JSON string (CSV, TSV,
    a Parquet string column)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as err:
            return RowProblem(line, "bad_row", f"field {name!r} is not JSON: {err}")
        if not isinstance(value, dict):
            return RowProblem(line, "bad_row", f"field {name!r} is JSON but not an object")
    if not isinstance(value, dict):
        return RowProblem(line, "bad_row", f"field {name!r} must be a JSON object")
    return value


# --------------------------------------------------------------------------- text formats
@contextmanager
def _open_bytes(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes, gunzipped when it is gzip (told by its first bytes, not its name)."""
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == GZIP_MAGIC
    with gzip.open(path, "rb") if gzipped else open(path, "rb") as f:
        yield f


def _lines(f: IO[bytes], path: Path) -> Lines:
    """(line number, bytes of the line), None for a line over MAX_LINE_BYTES (skipped)."""
    number = 0
    try:
        while raw := f.readline(MAX_LINE_BYTES):
            number += 1
            if number == 1 and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while (rest := f.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass
                yield number, None
            else:
                yield number, raw
    except (EOFError, OSError, zlib.error) as err:  # a truncated or damaged gzip stream
        raise CorpusFileError(f"{path.name}: cannot read beyond line {number}: {err}") from err


def _too_long(line: int) -> RowProblem:
    return RowProblem(line, "bad_row", f"the line is longer than {MAX_LINE_BYTES >> 20} MiB")


def _decode(line: int, raw: bytes) -> str | RowProblem:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return RowProblem(
            line,
            "invalid_utf8",
            f"not UTF-8: byte 0x{raw[err.start]:02x} at offset {err.start} of the line",
        )


Parser = Callable[[Lines, FieldMap, Path], Iterator[Row]]


def _text_rows(path: Path, fields: FieldMap, parse: Parser) -> Iterator[Row]:
    with _open_bytes(path) as f:
        yield from parse(_lines(f, path), fields, path)


def _jsonl(lines: Lines, fields: FieldMap, path: Path) -> Iterator[Row]:
    for number, raw in lines:
        text = _too_long(number) if raw is None else _decode(number, raw)
        if isinstance(text, RowProblem):
            yield number, text
            continue
        if not text.strip():
            continue  # blank lines (a trailing newline too many) are no rows
        try:
            record = json.loads(text)
        except ValueError as err:
            yield number, RowProblem(number, "bad_json", f"not JSON: {err}")
            continue
        if not isinstance(record, dict):
            what = type(record).__name__
            yield number, RowProblem(number, "bad_json", f"a JSON {what}, not an object")
            continue
        yield number, _document(number, record, fields)


def _columns(header: list[str], fields: FieldMap, path: Path) -> dict[str, int]:
    """Column index by field name (the first column of a name wins); the id and text columns
    must be there, or no row could be a document."""
    index: dict[str, int] = {}
    for i, name in enumerate(header):
        index.setdefault(name, i)
    for role, name in (("id", fields.id), ("text", fields.text)):
        if name not in index:
            raise CorpusFileError(
                f"{path.name} has no column {name!r} (its columns: {', '.join(header)}): "
                f"name the {role} column with --{role}-field"
            )
    wanted = set(fields.as_dict().values())
    return {name: i for name, i in index.items() if name in wanted}


def _tsv(lines: Lines, fields: FieldMap, path: Path) -> Iterator[Row]:
    columns: dict[str, int] | None = None
    width = 0
    for number, raw in lines:
        text = _too_long(number) if raw is None else _decode(number, raw)
        if isinstance(text, RowProblem):
            if columns is None:
                raise CorpusFileError(f"{path.name}: the header line: {text.message}")
            yield number, text
            continue
        text = text.rstrip("\n").removesuffix("\r")
        if columns is None:
            header = text.split("\t")
            columns, width = _columns(header, fields, path), len(header)
            continue
        if not text.strip():
            continue
        cells = text.split("\t")
        if len(cells) != width:
            why = f"{len(cells)} tab-separated fields, the header has {width}"
            yield number, RowProblem(number, "bad_row", why)
            continue
        yield number, _document(number, {n: cells[i] for n, i in columns.items()}, fields)
    if columns is None:
        raise CorpusFileError(f"{path.name} is empty: a TSV file starts with a header line")


def _csv(lines: Lines, fields: FieldMap, path: Path) -> Iterator[Row]:
    """CSV records may span lines (quoted newlines), so the csv module splits them; the lines
    it reads are decoded here first, and a bad line's problem goes to the record holding it.
    A record's line is the line it starts on."""
    bad: dict[int, RowProblem] = {}

    def decoded() -> Iterator[str]:
        for number, raw in lines:
            text = _too_long(number) if raw is None else _decode(number, raw)
            if isinstance(text, RowProblem):
                bad[number] = text
                text = "\n" if raw is None else raw.decode("utf-8", "replace")
            yield text

    csv.field_size_limit(MAX_LINE_BYTES)
    reader = csv.reader(decoded(), strict=False)
    try:
        header = next(reader)
    except StopIteration:
        raise CorpusFileError(
            f"{path.name} is empty: a CSV file starts with a header line"
        ) from None
    if bad:
        raise CorpusFileError(f"{path.name}: the header line: {bad[min(bad)].message}")
    columns, width = _columns(header, fields, path), len(header)
    end = reader.line_num
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            end = reader.line_num
            yield start, RowProblem(start, "bad_row", f"not CSV: {err}")
            continue
        end = reader.line_num
        problems = [bad.pop(n) for n in range(start, end + 1) if n in bad]
        if problems:
            yield start, RowProblem(start, problems[0].kind, problems[0].message)
        elif not row or row == [""]:
            continue  # a blank line
        elif len(row) != width:
            why = f"{len(row)} columns, the header has {width}"
            yield start, RowProblem(start, "bad_row", why)
        else:
            yield start, _document(start, {n: row[i] for n, i in columns.items()}, fields)


# --------------------------------------------------------------------------- Parquet
def _parquet(path: Path, fields: FieldMap) -> Iterator[Row]:
    """Row numbers count from 1 (there is no header line). Only the mapped columns are read,
    a batch of PARQUET_BATCH rows at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise CorpusFileError(f"{path.name} is not a Parquet file: {err}") from err
    columns = _columns(parquet.schema_arrow.names, fields, path)
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH, columns=list(columns)):
            values = {name: batch.column(name).to_pylist() for name in columns}
            if fields.metadata in values:
                values[fields.metadata] = [_plain(v) for v in values[fields.metadata]]
            for i in range(batch.num_rows):
                number += 1
                yield number, _document(number, {n: v[i] for n, v in values.items()}, fields)
    except (pa.ArrowException, OSError) as err:
        raise CorpusFileError(f"{path.name}: cannot read beyond row {number}: {err}") from err


def _plain(value: Any) -> Any:
    """A Parquet struct or map as plain JSON (dates, decimals and bytes become strings)."""
    if isinstance(value, list) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        value = dict(value)  # a map column
    if isinstance(value, dict):
        return json.loads(json.dumps(value, default=str))
    return value
