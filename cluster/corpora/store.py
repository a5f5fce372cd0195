"""Corpora in the artifact store's bucket: immutable snapshots and a `LATEST` pointer per name.

Layout (bucket `settings.s3_bucket`, beside `models/`)::

    corpora/<name>/<snapshot>/documents.jsonl.gz  one Document.to_json() a line, in file order
    corpora/<name>/<snapshot>/manifest.json       written LAST: no manifest, no snapshot
    corpora/<name>/LATEST                         {"snapshot": the newest import}
    corpora/<name>/<snapshot>/derived/<key>       caches computed from the snapshot (teacher
                                                  vectors): never part of its manifest

The same publishing rules as model versions (cluster/artifacts.py), with its S3 helpers: a
reader sees complete snapshots only, files are checksummed in the manifest, and a download is
verified (and re-fetched once) before anyone reads it. An import reads the user's file once,
validating and gzipping into a temporary file, and uploads only when the whole file passed (or,
with `skip_bad`, without the bad rows); whatever a failed upload had written is removed again.
"""

from __future__ import annotations

import gzip
import io
import json
import queue
import re
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from minio import Minio
from tqdm import tqdm

from cluster.artifacts import MANIFEST, ArtifactStore, FileEntry, minio_client, sha256_file
from cluster.config import Settings
from cluster.corpora.documents import Document
from cluster.corpora.readers import FieldMap, detect_format, read_documents
from cluster.corpora.validation import (
    CorpusError,
    CorpusFileError,
    InvalidCorpusName,
    ProblemLog,
    RowProblem,
    Validator,
    describe_problems,
)

PREFIX = "corpora/"
DOCUMENTS = "documents.jsonl.gz"
LATEST = "LATEST"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
SNAPSHOT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# zlib level 3: much faster than the default on passages for slightly larger files
# (docs/results/own-documents.md, "Import"). Compression runs in a thread of its own.
GZIP_LEVEL = 3
WRITE_BATCH = 4096  # lines per write to the gzip stream


class CorpusNotFound(CorpusError, LookupError):
    pass


class GzipWriter:
    """A gzip file written by a thread of its own. zlib releases the GIL, so compressing
    overlaps with parsing and validating (on one thread it was half an import's time); the
    queue is bounded, so a slow disk holds the reader back instead of filling the memory."""

    def __init__(self, path: Path, queued: int = 8):
        self._file = gzip.open(path, "wb", compresslevel=GZIP_LEVEL)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=queued)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="corpus-gzip", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._file.write(chunk)
                except BaseException as err:  # e.g. disk full: raised in the caller's thread
                    self._error = err

    def write(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def __enter__(self) -> GzipWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._queue.put(None)
        self._thread.join()
        self._file.close()
        if self._error is not None and exc[0] is None:
            raise self._error


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidCorpusName(
            f"invalid corpus name {name!r}: use 1-64 lowercase letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass
class ImportReport:
    """What an import did. `snapshot` is None when nothing was published (bad rows without
    skip_bad, or no good row at all); `problems` lists the first MAX_LISTED_PROBLEMS bad rows,
    `counts` counts all of them by kind."""

    name: str
    snapshot: str | None
    count: int
    problems: list[RowProblem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    source: str = ""
    format: str = ""

    @property
    def bad_rows(self) -> int:
        return sum(self.counts.values())

    def describe(self, limit: int = 20) -> str:
        """The CLI's text: one line when imported, else the problems and what to do."""
        if self.snapshot is not None:
            text = f"imported {self.count} documents as {self.name}/{self.snapshot}"
            text += f" in {self.seconds:.1f} s"
            if self.bad_rows:
                text += f"; left out {self.bad_rows} bad rows:\n"
                text += describe_problems(self.problems, self.counts, limit)
            return text
        report = describe_problems(self.problems, self.counts, limit)
        if self.count == 0:
            return f"{report}\nnothing imported: {self.source} holds no good row"
        return (
            f"{report}\nnothing imported: {self.source} has {self.bad_rows} bad rows "
            f"(and {self.count} good ones). Fix them, or pass --skip-bad to import the good "
            "rows only"
        )


class CorpusStore:
    """Imports, lists and reads corpora; the bucket, client and helpers are the artifact
    store's (`objects`), so corpora live and are configured exactly like model versions."""

    def __init__(
        self,
        client: Minio,
        bucket: str,
        cache_dir: Path,
        max_text_chars: int = 20_000,
        max_id_chars: int = 256,
    ):
        self.objects = ArtifactStore(client, bucket, cache_dir)  # creates the bucket if needed
        self.client = client
        self.bucket = bucket
        self.cache_dir = Path(cache_dir) / "corpora"
        self.max_text_chars = max_text_chars
        self.max_id_chars = max_id_chars

    @classmethod
    def from_settings(cls, settings: Settings) -> CorpusStore:
        return cls(
            minio_client(settings),
            settings.s3_bucket,
            settings.cache_dir,
            settings.corpus_max_text_chars,
            settings.corpus_max_id_chars,
        )

    # ------------------------------------------------------------------ importing
    @staticmethod
    def new_snapshot_id() -> str:
        """Sortable by creation time, unique across importers: s20261127-041502-ab12."""
        return f"s{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"

    def import_file(
        self,
        path: Path,
        name: str,
        fields: FieldMap = FieldMap(),
        fmt: str | None = None,
        skip_bad: bool = False,
        progress: bool = True,
    ) -> ImportReport:
        """Validate `path` and publish it as a new snapshot of `name` (then its LATEST).

        Refuses the whole file (publishing nothing) when any row is bad, unless `skip_bad`,
        which leaves bad rows out. A file that cannot be read at all raises CorpusFileError.
        The gzipped documents wait in a temporary file (TMPDIR) until the file has passed."""
        started = time.perf_counter()
        name, path = check_name(name), Path(path)
        rows = read_documents(path, fields, fmt)
        report = ImportReport(name, None, 0, source=path.name, format=detect_format(path, fmt))
        log = ProblemLog()
        with tempfile.TemporaryDirectory(prefix="tt-corpus-") as folder:
            local = Path(folder) / DOCUMENTS
            self._compress(rows, local, report, log, skip_bad, progress)
            report.problems, report.counts = log.problems, dict(log.counts)
            if report.count == 0 and not log:
                raise CorpusFileError(f"{path.name} holds no documents")
            if report.count and (skip_bad or not log):
                if progress:
                    size = local.stat().st_size / 1e6
                    print(f"uploading {size:.1f} MB to s3://{self.bucket}", file=sys.stderr)
                report.snapshot = self._publish(local, report, fields, path.stat().st_size)
        report.seconds = time.perf_counter() - started
        return report

    def _compress(
        self,
        rows: Iterator[tuple[int, Document | RowProblem]],
        local: Path,
        report: ImportReport,
        log: ProblemLog,
        skip_bad: bool,
        progress: bool,
    ) -> None:
        """Validate every row into `log` (problems) and `report.count` (good rows); write the
        good rows to the gzip file `local` unless a bad row has already refused the import."""
        validator = Validator(self.max_text_chars, self.max_id_chars)
        bar = tqdm(
            desc=f"reading {report.source}",
            unit=" rows",
            file=sys.stderr,
            disable=not progress,
            mininterval=0.5,
        )
        with GzipWriter(local) as out, bar:
            lines: list[bytes] = []
            done = 0
            for done, (_, item) in enumerate(validator.validate(rows), 1):
                if isinstance(item, RowProblem):
                    log.add(item)
                else:
                    report.count += 1
                    if skip_bad or not log:  # once refused, only the problems matter
                        lines.append(item.to_json().encode("utf-8"))
                if len(lines) == WRITE_BATCH:
                    out.write(b"\n".join(lines) + b"\n")
                    lines.clear()
                if done % WRITE_BATCH == 0:
                    bar.update(WRITE_BATCH)
            if lines:
                out.write(b"\n".join(lines) + b"\n")
            bar.update(done - bar.n)

    def _publish(self, local: Path, report: ImportReport, fields: FieldMap, size: int) -> str:
        """Documents, manifest, pointer, in that order; on any failure (or Ctrl-C) remove
        what was written, so a failed import leaves nothing behind."""
        name, snapshot = report.name, self.new_snapshot_id()
        prefix = f"{PREFIX}{name}/{snapshot}/"
        previous = self.objects.get_bytes(self._latest_key(name))
        entry = FileEntry(sha256=sha256_file(local), size=local.stat().st_size)
        manifest: dict[str, Any] = {
            "name": name,
            "snapshot": snapshot,
            "created_at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "count": report.count,
            "source": report.source,
            "source_bytes": size,
            "format": report.format,
            "fields": fields.as_dict(),
            "skipped": report.bad_rows,
            "skipped_by_kind": dict(report.counts),
            "limits": {"max_text_chars": self.max_text_chars, "max_id_chars": self.max_id_chars},
            "files": {DOCUMENTS: entry.model_dump()},
        }
        try:
            self.client.fput_object(
                self.bucket, prefix + DOCUMENTS, str(local), content_type="application/gzip"
            )
            self.objects.put_json(prefix + MANIFEST, manifest)
            self.objects.put_json(self._latest_key(name), {"snapshot": snapshot})
        except BaseException as err:
            try:
                self._undo(name, snapshot, previous)
            except Exception as cleanup:  # S3 went away: the partial snapshot has no manifest
                err.add_note(f"could not remove s3://{self.bucket}/{prefix}: {cleanup}")
            raise
        return snapshot

    def _undo(self, name: str, snapshot: str, previous: bytes | None) -> None:
        """Put the pointer back if it moved, then delete the snapshot's objects."""
        key = self._latest_key(name)
        if self.latest(name) == snapshot:
            if previous is None:
                self.client.remove_object(self.bucket, key)
            else:
                self.objects.put_json(key, _json(previous))
        prefix = f"{PREFIX}{name}/{snapshot}/"
        for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
            self.client.remove_object(self.bucket, obj.object_name)

    # ------------------------------------------------------------------ reading
    @staticmethod
    def _latest_key(name: str) -> str:
        return f"{PREFIX}{check_name(name)}/{LATEST}"

    def latest(self, name: str) -> str | None:
        """The newest imported snapshot of `name`, None if there is no such corpus."""
        raw = self.objects.get_bytes(self._latest_key(name))
        return _json(raw)["snapshot"] if raw else None

    def names(self) -> list[str]:
        """Every corpus with a LATEST pointer, by name."""
        found = []
        for obj in self.client.list_objects(self.bucket, prefix=PREFIX):
            name = obj.object_name[len(PREFIX) :].rstrip("/")
            if obj.is_dir and NAME_RE.match(name) and self.latest(name):
                found.append(name)
        return sorted(found)

    def snapshots(self, name: str) -> list[str]:
        """Complete snapshots of `name` (those with a manifest), oldest first."""
        prefix = f"{PREFIX}{check_name(name)}/"
        found = []
        for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
            parts = obj.object_name[len(prefix) :].split("/")
            if len(parts) == 2 and parts[1] == MANIFEST:
                found.append(parts[0])
        if not found:
            raise CorpusNotFound(f"no corpus named {name!r}")
        # The ids sort by creation second; within one second the manifests' microseconds do.
        stamps = [s.rsplit("-", 1)[0] for s in found]
        tied = {s for s, stamp in zip(found, stamps, strict=True) if stamps.count(stamp) > 1}
        created = {s: self.manifest(name, s)["created_at"] for s in tied}
        return sorted(found, key=lambda s: (s.rsplit("-", 1)[0], created.get(s, ""), s))

    def _resolve(self, name: str, snapshot: str | None) -> str:
        if snapshot is None:
            snapshot = self.latest(name)
            if snapshot is None:
                raise CorpusNotFound(f"no corpus named {name!r}")
        elif not SNAPSHOT_RE.match(snapshot):
            raise CorpusNotFound(f"corpus {name!r} has no snapshot {snapshot!r}")
        return snapshot

    def manifest(self, name: str, snapshot: str | None = None) -> dict[str, Any]:
        """The manifest of `snapshot` (default: LATEST) of `name`."""
        snapshot = self._resolve(name, snapshot)
        raw = self.objects.get_bytes(f"{PREFIX}{check_name(name)}/{snapshot}/{MANIFEST}")
        if raw is None:
            raise CorpusNotFound(f"corpus {name!r} has no snapshot {snapshot!r}")
        return _json(raw)

    def list_corpora(self) -> list[dict[str, Any]]:
        """One row per corpus: name, latest snapshot, count, created_at, snapshots."""
        rows = []
        for name in self.names():
            manifest = self.manifest(name)
            rows.append(
                {
                    "name": name,
                    "snapshot": manifest["snapshot"],
                    "count": manifest["count"],
                    "created_at": manifest["created_at"],
                    "source": manifest.get("source", ""),
                    "snapshots": len(self.snapshots(name)),
                }
            )
        return rows

    def download(self, name: str, snapshot: str | None = None) -> Path:
        """A local, checksum-verified copy (folder with documents.jsonl.gz and manifest.json)
        in <cache_dir>/corpora/<name>/<snapshot>; an intact cached copy is kept, a corrupt one
        is fetched again, and a remote file that is corrupt twice raises CorruptArtifact."""
        manifest = self.manifest(name, snapshot)
        snapshot = manifest["snapshot"]
        target = self.cache_dir / name / snapshot
        target.mkdir(parents=True, exist_ok=True)
        for rel, entry in manifest["files"].items():
            entry = FileEntry.model_validate(entry)
            path = target / Path(rel).name
            if (
                path.exists()
                and path.stat().st_size == entry.size
                and sha256_file(path) == entry.sha256
            ):
                continue
            self.objects._fetch_verified(f"{PREFIX}{name}/{snapshot}/{rel}", path, entry)
        (target / MANIFEST).write_bytes(_dumps(manifest))
        return target

    def documents(self, name: str, snapshot: str | None = None) -> Iterator[Document]:
        """The documents of a snapshot, in the imported file's order. Downloads (and raises
        CorpusNotFound) at once, then streams: memory does not grow with the corpus."""
        return _read_documents(self.download(name, snapshot) / DOCUMENTS)

    # ------------------------------------------------------------------ derived caches
    def _derived_key(self, name: str, snapshot: str, key: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*", key):
            raise ValueError(f"bad derived key {key!r}")
        return f"{PREFIX}{check_name(name)}/{self._resolve(name, snapshot)}/derived/{key}"

    def derived(self, name: str, snapshot: str, key: str) -> bytes | None:
        """A cache computed from the snapshot (None if not computed yet). The snapshot's
        documents never change, so what was computed from them stays true."""
        return self.objects.get_bytes(self._derived_key(name, snapshot, key))

    def put_derived(self, name: str, snapshot: str, key: str, data: bytes) -> None:
        self.client.put_object(
            self.bucket, self._derived_key(name, snapshot, key), io.BytesIO(data), len(data)
        )


def _read_documents(path: Path) -> Iterator[Document]:
    with gzip.open(path, "rb") as f:
        for line in f:
            yield Document.from_json(line)


def _json(raw: bytes) -> dict[str, Any]:
    return json.loads(raw)


def _dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, indent=2, sort_keys=True).encode()
