"""Corpora (cluster/corpora) against the real S3 server (SeaweedFS): every format read back
as written, every problem kind reported on its line with nothing published, checksums, and a
failed upload (a real broken connection) that leaves nothing behind."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import socket
import threading
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import urllib3

from cluster.artifacts import CorruptArtifact, sha256_file
from cluster.corpora import (
    KINDS,
    CorpusFileError,
    CorpusNotFound,
    CorpusStore,
    Document,
    FieldMap,
    InvalidCorpusName,
    bench,
    read_documents,
)
from cluster.corpora.validation import IdSet

MAX_TEXT, MAX_ID = 100, 20


@pytest.fixture
def store(settings, tmp_path) -> CorpusStore:
    """A store on its own fresh bucket (so tests do not see each other's corpora), with small
    limits so too-long rows are short to write."""
    isolated = settings.model_copy(
        update={
            "s3_bucket": f"corp-{uuid.uuid4().hex[:12]}",
            "model_cache_dir": tmp_path / "cache",
            "corpus_max_text_chars": MAX_TEXT,
            "corpus_max_id_chars": MAX_ID,
        }
    )
    return CorpusStore.from_settings(isolated)


def keys(store: CorpusStore, name: str) -> list[str]:
    found = store.client.list_objects(store.bucket, prefix=f"corpora/{name}/", recursive=True)
    return sorted(obj.object_name for obj in found)


# --------------------------------------------------------------------------- files
DOCS = [
    Document(
        "159911",
        'Le café sert une crème brûlée, "entre guillemets", avec une virgule',
        title="Café",
        url="https://example.org/cafe",
        metadata={"lang": "fr", "tags": ["a", "b"], "n": 1},
    ),
    Document("7", "ü 日本語 text without a title"),
    Document("doc-3", "plain text", title="A title"),
]
COLUMNS = ["id", "text", "title", "url", "metadata"]


def cells(doc: Document) -> list[str]:
    meta = json.dumps(doc.metadata, ensure_ascii=False) if doc.metadata else ""
    return [doc.id, doc.text, doc.title or "", doc.url or "", meta]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def write_docs(folder: Path, filename: str, docs: list[Document]) -> Path:
    """`docs` in the format the name says; numeric ids as JSON numbers."""
    path = folder / filename
    if filename.endswith(".parquet"):
        table = pa.table({c: [cells(d)[i] or None for d in docs] for i, c in enumerate(COLUMNS)})
        pq.write_table(table, path)
        return path
    if ".jsonl" in filename or ".ndjson" in filename:
        lines = []
        for doc in docs:
            record = json.loads(doc.to_json())
            record["id"] = int(doc.id) if doc.id.isdigit() else doc.id
            lines.append(json.dumps(record, ensure_ascii=False))
        return write(path, ("\n".join(lines) + "\n").encode())
    rows = [COLUMNS, *(cells(d) for d in docs)]
    if ".tsv" in filename:  # no quoting in TSV: a quote is text
        return write(path, "".join("\t".join(row) + "\n" for row in rows).encode())
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return write(path, buffer.getvalue().encode())


LONG = "x" * (MAX_TEXT + 1)
BAD_JSONL = b"\n".join(
    [
        b'{"id": "a", "text": "good one"}',  # 1
        b'{"id": "b", "text": ',  # 2 bad_json
        b'{"id": "c"}',  # 3 missing_field
        b'{"id": "d", "text": "  \\t "}',  # 4 empty_text
        b'{"id": "a", "text": "the same id again"}',  # 5 duplicate_id
        b'{"id": "e", "text": "caf\xe9"}',  # 6 invalid_utf8 (latin-1)
        b'{"id": "f", "text": "' + LONG.encode() + b'"}',  # 7 text_too_long
        b'{"id": "g\\u0001h", "text": "control character"}',  # 8 bad_id
        b'{"id": "h", "text": "ok", "title": 5}',  # 9 bad_row
        b'{"id": "' + b"i" * (MAX_ID + 1) + b'", "text": "long id"}',  # 10 bad_id
        b"",  # 11 a blank line: no row
        b'{"id": 159911, "text": "numeric id"}',  # 12
        b'{"id": "j", "text": "\\ud800"}',  # 13 invalid_utf8 (an escaped lone surrogate)
        b"[1, 2]",  # 14 bad_json
        b'{"id": true, "text": "a bool id"}',  # 15 bad_id
        b'{"id": "k", "text": "meta", "metadata": [1]}',  # 16 bad_row
        b'{"id": "l", "text": null}',  # 17 missing_field
    ]
)
BAD_JSONL_EXPECTED = {
    2: "bad_json", 3: "missing_field", 4: "empty_text", 5: "duplicate_id", 6: "invalid_utf8",
    7: "text_too_long", 8: "bad_id", 9: "bad_row", 10: "bad_id", 13: "invalid_utf8",
    14: "bad_json", 15: "bad_id", 16: "bad_row", 17: "missing_field",
}  # fmt: skip
BAD_CSV = b"\n".join(
    [
        b"id,text,title,metadata",  # 1
        b"a,good one,,",  # 2
        b'b,"a record over',  # 3 (good, two lines)
        b'two lines",T,"{""k"": 1}"',  # 4
        b"c,too,many,columns,here",  # 5 bad_row
        b"d,  ,,",  # 6 empty_text
        b"a,the same id,,",  # 7 duplicate_id
        b"e,caf\xe9,,",  # 8 invalid_utf8
        b"f," + LONG.encode() + b",,",  # 9 text_too_long
        b",no id,,",  # 10 bad_id
        b"g,metadata not an object,,[1]",  # 11 bad_row
        b"159911,numeric,,",  # 12
        b"",
    ]
)
BAD_CSV_EXPECTED = {
    5: "bad_row", 6: "empty_text", 7: "duplicate_id", 8: "invalid_utf8", 9: "text_too_long",
    10: "bad_id", 11: "bad_row",
}  # fmt: skip
BAD_TSV = b"\n".join(
    [
        b"id\ttext\ttitle",  # 1
        b"a\tgood one\t",  # 2
        b"b\ta missing column",  # 3 bad_row
        b"c\t \t",  # 4 empty_text
        b"a\tthe same id\t",  # 5 duplicate_id
        b"d\tcaf\xe9\t",  # 6 invalid_utf8
        b"e\t" + LONG.encode() + b"\t",  # 7 text_too_long
        b"f\x01g\tcontrol character\t",  # 8 bad_id
        b'159911\t"quotes" are text in TSV\tT',  # 9
        b"",
    ]
)
BAD_TSV_EXPECTED = {
    3: "bad_row", 4: "empty_text", 5: "duplicate_id", 6: "invalid_utf8", 7: "text_too_long",
    8: "bad_id",
}  # fmt: skip


def bad_parquet(path: Path) -> Path:
    """The text column is binary, so one row can hold bytes that are not UTF-8."""
    rows = [
        ("a", b"good one"),  # 1
        (None, b"no id"),  # 2 missing_field
        ("b", None),  # 3 missing_field
        ("c", b"  "),  # 4 empty_text
        ("a", b"the same id"),  # 5 duplicate_id
        ("d", b"caf\xe9"),  # 6 invalid_utf8
        ("e", LONG.encode()),  # 7 text_too_long
        ("", b"empty id"),  # 8 bad_id
        ("159911", b"good too"),  # 9
    ]
    ids, texts = zip(*rows, strict=True)
    pq.write_table(pa.table({"id": pa.array(ids), "text": pa.array(texts, pa.binary())}), path)
    return path


BAD_PARQUET_EXPECTED = {
    2: "missing_field", 3: "missing_field", 4: "empty_text", 5: "duplicate_id",
    6: "invalid_utf8", 7: "text_too_long", 8: "bad_id",
}  # fmt: skip
BAD_FILES = {  # name: (writer, {line: problem kind}, the ids of the good rows)
    "bad.jsonl": (lambda p: write(p, BAD_JSONL), BAD_JSONL_EXPECTED, ["a", "159911"]),
    "bad.jsonl.gz": (lambda p: write(p, BAD_JSONL), BAD_JSONL_EXPECTED, ["a", "159911"]),
    "bad.csv": (lambda p: write(p, BAD_CSV), BAD_CSV_EXPECTED, ["a", "b", "159911"]),
    "bad.tsv.gz": (lambda p: write(p, BAD_TSV), BAD_TSV_EXPECTED, ["a", "159911"]),
    "bad.parquet": (bad_parquet, BAD_PARQUET_EXPECTED, ["a", "159911"]),
}


# --------------------------------------------------------------------------- tests
def test_a_document_is_one_compact_json_line():
    doc = Document("1", "crème", title="T", metadata={"k": "ü"})
    assert doc.to_json() == '{"id":"1","text":"crème","title":"T","metadata":{"k":"ü"}}'
    assert Document.from_json(doc.to_json()) == doc
    assert Document.from_json(doc.to_json().encode()) == doc
    assert doc.passage == "T crème" and Document("2", "text").passage == "text"


@pytest.mark.parametrize("filename", sorted(BAD_FILES))
def test_bad_rows_are_reported_on_their_lines_and_nothing_is_published(store, tmp_path, filename):
    make, expected, good = BAD_FILES[filename]
    report = store.import_file(make(tmp_path / filename), "bad", progress=False)
    print(report.describe())
    assert report.snapshot is None
    assert {p.line: p.kind for p in report.problems} == expected
    assert report.counts == {k: list(expected.values()).count(k) for k in set(expected.values())}
    assert report.count == len(good)
    assert keys(store, "bad") == []
    with pytest.raises(CorpusNotFound, match="no corpus named 'bad'"):
        store.manifest("bad")
    text = report.describe()
    assert f"line {min(expected)}: {expected[min(expected)]}" in text and "--skip-bad" in text


def test_every_problem_kind_is_covered_by_the_files_above():
    assert set(BAD_JSONL_EXPECTED.values()) == set(KINDS)


@pytest.mark.parametrize("filename", ["bad.jsonl.gz", "bad.csv"])
def test_skip_bad_imports_the_good_rows_only(store, tmp_path, filename):
    make, expected, good = BAD_FILES[filename]
    report = store.import_file(make(tmp_path / filename), "good", skip_bad=True, progress=False)
    assert report.snapshot is not None and store.latest("good") == report.snapshot
    docs = list(store.documents("good"))
    assert [d.id for d in docs] == good and report.count == len(good)
    if filename == "bad.csv":
        assert docs[1] == Document("b", "a record over\ntwo lines", title="T", metadata={"k": 1})
    else:
        assert docs == [Document("a", "good one"), Document("159911", "numeric id")]
    assert {p.line: p.kind for p in report.problems} == expected
    manifest = store.manifest("good")
    assert manifest["count"] == len(docs) and manifest["skipped"] == len(expected)
    assert manifest["skipped_by_kind"] == report.counts
    assert f"left out {len(expected)} bad rows" in report.describe()


@pytest.mark.parametrize(
    "filename",
    ["docs.jsonl", "docs.jsonl.gz", "docs.ndjson", "docs.csv", "docs.csv.gz", "docs.tsv",
     "docs.tsv.gz", "docs.parquet"],
)  # fmt: skip
def test_every_format_round_trips(store, tmp_path, filename):
    path = write_docs(tmp_path, filename, DOCS)
    report = store.import_file(path, "rt", progress=False)
    assert (report.count, report.problems) == (3, [])
    assert list(store.documents("rt")) == DOCS
    manifest = store.manifest("rt")
    assert manifest["source"] == filename and manifest["count"] == 3
    assert manifest["format"] == filename.split(".")[1].replace("ndjson", "jsonl")
    assert keys(store, "rt") == [
        "corpora/rt/LATEST",
        f"corpora/rt/{report.snapshot}/documents.jsonl.gz",
        f"corpora/rt/{report.snapshot}/manifest.json",
    ]


def test_field_names_and_format_are_options(store, tmp_path):
    path = write(tmp_path / "passages.txt", b"pid\tpassage\theadline\n1\tfirst\tOne\n2\tsecond\t\n")
    with pytest.raises(CorpusFileError, match="cannot tell the format of passages.txt"):
        store.import_file(path, "opts", progress=False)
    with pytest.raises(CorpusFileError, match="no column 'id'.*--id-field"):
        store.import_file(path, "opts", fmt="tsv", progress=False)
    fields = FieldMap(id="pid", text="passage", title="headline")
    store.import_file(path, "opts", fields=fields, fmt="tsv", progress=False)
    assert list(store.documents("opts")) == [Document("1", "first", "One"), Document("2", "second")]
    assert store.manifest("opts")["fields"]["text"] == "passage"


def test_parquet_native_types(store, tmp_path):
    """Integer ids become strings; struct and map metadata become JSON objects."""
    path = tmp_path / "native.parquet"
    table = pa.table(
        {
            "id": pa.array([159911, 2], pa.int64()),
            "text": ["one", "two"],
            "metadata": pa.array(
                [{"a": 1, "b": "x"}, None], pa.struct([("a", pa.int64()), ("b", pa.string())])
            ),  # fmt: skip
        }
    )
    pq.write_table(table, path)
    store.import_file(path, "native", progress=False)
    assert list(store.documents("native")) == [
        Document("159911", "one", metadata={"a": 1, "b": "x"}),
        Document("2", "two"),
    ]


def test_whole_file_problems_are_one_clear_error(store, tmp_path):
    with pytest.raises(CorpusFileError, match="no such file"):
        store.import_file(tmp_path / "nope.jsonl", "x", progress=False)
    with pytest.raises(CorpusFileError, match="holds no documents"):
        store.import_file(write(tmp_path / "empty.jsonl", b"\n\n"), "x", progress=False)
    with pytest.raises(CorpusFileError, match="CSV file starts with a header"):
        store.import_file(write(tmp_path / "empty.csv", b""), "x", progress=False)
    with pytest.raises(CorpusFileError, match="no column 'text'"):
        store.import_file(write(tmp_path / "a.csv", b"id,body\n1,x\n"), "x", progress=False)
    # A gzip stream that breaks off after its first lines: a real read failure, partway.
    whole = gzip.compress(b"".join(b'{"id": %d, "text": "row %d"}\n' % (i, i) for i in range(5000)))
    cut = write(tmp_path / "cut.jsonl", whole[: len(whole) // 2])  # no .gz: told by magic bytes
    with pytest.raises(CorpusFileError, match="cannot read beyond line"):
        store.import_file(cut, "x", progress=False)
    with pytest.raises(InvalidCorpusName, match="invalid corpus name 'Bad Name'"):
        store.import_file(write_docs(tmp_path, "ok.jsonl", DOCS), "Bad Name", progress=False)
    assert keys(store, "x") == []


def test_list_show_and_snapshots(store, tmp_path):
    assert store.list_corpora() == []
    first = store.import_file(write_docs(tmp_path, "a.jsonl", DOCS[:1]), "alpha", progress=False)
    second = store.import_file(write_docs(tmp_path, "b.csv", DOCS), "alpha", progress=False)
    beta = store.import_file(write_docs(tmp_path, "c.tsv", DOCS[1:]), "beta", progress=False)

    assert store.snapshots("alpha") == [first.snapshot, second.snapshot]
    assert store.latest("alpha") == second.snapshot
    rows = {row["name"]: row for row in store.list_corpora()}
    assert sorted(rows) == ["alpha", "beta"]
    assert rows["alpha"]["snapshot"] == second.snapshot and rows["alpha"]["count"] == 3
    assert rows["alpha"]["snapshots"] == 2 and rows["beta"]["count"] == 2
    assert rows["beta"]["snapshot"] == beta.snapshot and rows["beta"]["source"] == "c.tsv"

    assert store.manifest("alpha", first.snapshot)["count"] == 1
    assert list(store.documents("alpha", first.snapshot)) == DOCS[:1]
    assert list(store.documents("alpha")) == DOCS
    with pytest.raises(CorpusNotFound, match="no corpus named 'gamma'"):
        store.documents("gamma")
    with pytest.raises(CorpusNotFound, match="has no snapshot 's2000"):
        store.manifest("alpha", "s20000101-000000-0000")
    with pytest.raises(CorpusNotFound):
        store.manifest("alpha", "../../models/LATEST")


def test_checksums_repair_the_cache_and_catch_a_corrupt_store(store, tmp_path):
    report = store.import_file(write_docs(tmp_path, "d.jsonl", DOCS), "sums", progress=False)
    folder = store.download("sums")
    cached = folder / "documents.jsonl.gz"
    entry = store.manifest("sums")["files"]["documents.jsonl.gz"]
    assert sha256_file(cached) == entry["sha256"]

    data = cached.read_bytes()
    cached.write_bytes(bytes(len(data)))  # same size, other bytes: only the checksum can tell
    assert list(store.documents("sums")) == DOCS  # re-fetched
    assert cached.read_bytes() == data

    key = f"corpora/sums/{report.snapshot}/documents.jsonl.gz"
    bad = gzip.compress(b'{"id":"evil","text":"not what was imported"}\n')
    store.client.put_object(store.bucket, key, io.BytesIO(bad), len(bad))
    cached.unlink()
    with pytest.raises(CorruptArtifact, match="does not match its manifest"):
        store.download("sums")
    assert not cached.exists() and not list(folder.glob(".documents*"))


class BreakingProxy:
    """A TCP forwarder to the real S3 that cuts the connection (before forwarding it) of any
    request whose request line matches `pattern`: the network failing at one chosen step."""

    def __init__(self, target: str, pattern: bytes):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.pattern = re.compile(pattern)
        self.cut = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        tail = b""
        try:
            while data := source.recv(1 << 16):
                if requests and self.pattern.search(tail + data):
                    self.cut += 1
                    break
                tail = data[-512:]
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def close(self) -> None:
        self.server.close()


@pytest.mark.parametrize("step", ["documents.jsonl.gz", "manifest.json", "LATEST"])
def test_a_failed_upload_leaves_nothing_behind(store, settings, tmp_path, step):
    """The connection to S3 breaks at the PUT of `step` (every retry too): the import raises,
    the objects it had written are gone, and the corpus's earlier snapshot stays live."""
    earlier = store.import_file(write_docs(tmp_path, "old.jsonl", DOCS[:1]), "fail", progress=False)
    before = keys(store, "fail")
    proxy = BreakingProxy(settings.s3_address, rb"PUT /[^ ]*/" + step.encode() + rb" HTTP")
    try:
        broken = CorpusStore.from_settings(
            settings.model_copy(
                update={
                    "s3_endpoint": proxy.address,
                    "s3_bucket": store.bucket,
                    "model_cache_dir": tmp_path / "cache2",
                }
            )  # fmt: skip
        )
        with pytest.raises(urllib3.exceptions.HTTPError):
            broken.import_file(write_docs(tmp_path, "new.jsonl", DOCS), "fail", progress=False)
    finally:
        proxy.close()
    assert proxy.cut >= 1
    assert keys(store, "fail") == before
    assert store.latest("fail") == earlier.snapshot
    assert list(store.documents("fail")) == DOCS[:1]


def test_the_id_set_finds_duplicates_across_its_runs():
    ids = IdSet(buffer=64)
    digests = [IdSet.digest(str(i)) for i in range(1000)]
    runs = set()
    for start in range(0, 500, 50):
        assert all(ids.add_all(digests[start : start + 50]))
        runs.add(len(ids._runs))
    assert max(runs) >= 2 and len(ids) == 500
    fresh = ids.add_all(digests[250:750] + [digests[0], digests[999], digests[999]])
    assert fresh == [False] * 250 + [True] * 250 + [False, True, False]
    assert len(ids) == 751


def test_read_documents_streams_line_numbers(tmp_path):
    path = write(tmp_path / "x.csv", b'id,text\r\n1,"a\r\nb"\r\n2,c\r\n')
    assert list(read_documents(path)) == [(2, Document("1", "a\r\nb")), (4, Document("2", "c"))]


def test_the_bench_runs_small(store, settings, tmp_path):
    """cluster/corpora/bench.py on the session's S3: it imports and reads back every row. It
    prints, never asserts, speed."""
    bench_settings = settings.model_copy(
        update={"s3_bucket": store.bucket, "model_cache_dir": tmp_path / "cache"}
    )
    result = bench.measure(bench_settings, 2000, 60, tmp_path)
    print("\n" + bench.describe(result))
    assert result["rows"] == 2000 and result["stored_mb"] > 0
    assert store.manifest("corpus-bench")["count"] == 2000
