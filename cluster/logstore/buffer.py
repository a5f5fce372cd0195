"""The drain side of the log buffer: one drainer at a time over every writer's stream.

Writers append to their own streams (wal.py). Whoever holds `drain.lock` (a non-blocking
`flock`; the kernel drops it when its holder dies) reads every stream from where the last
drainer stopped (the `.done` files), in log order within a stream and by record time across
streams, hands the records to `write`, and only then records how far it got and deletes what
is fully written. Nothing is skipped: a stream is read in order or not at all, so a feedback
never goes ahead of its search (two drainers skipping each other's locked segments once
wrote a click before its search). `write` raising leaves everything in place for the next try.

Also kept here, touched only under the lock: `held.jsonl`, feedback whose search is not in
PostgreSQL yet (another writer still holds it), retried until it lands or a deadline passes.
Segments of the previous buffer format (`seg-*.jsonl` in the folder itself) are drained too.
"""

from __future__ import annotations

import fcntl
import heapq
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cluster.logstore.wal import (
    OWNER_LOCK,
    SEGMENT_GLOB,
    STREAM_GLOB,
    done_path,
    read_done,
    write_done,
)

log = logging.getLogger(__name__)
DRAIN_LOCK = "drain.lock"
HELD = "held.jsonl"
LEGACY_GLOB = "seg-*.jsonl"
READ_BYTES = 1024 * 1024  # per segment and round; a record is at most ~100 kB
EARLIEST = datetime.min.replace(tzinfo=UTC)


@dataclass
class Cursor:
    """How far one drain round read one segment."""

    segment: Path
    start: int  # byte offset the round started from
    offset: int
    lines: int
    finished: bool  # sealed (no appends can come) and read to its end: delete it once written


@dataclass
class Batch:
    records: list[dict] = field(default_factory=list)
    cursors: list[Cursor] = field(default_factory=list)
    dead: list[Path] = field(default_factory=list)  # streams whose writer is gone


def _locked_by_someone(path: Path) -> bool:
    """True while another open file holds an exclusive flock on `path` (its writer lives)."""
    try:
        with open(path, "rb") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
    except BlockingIOError:
        return True
    except FileNotFoundError:
        return False


def _time(record: dict) -> datetime:
    """When the record was made (UTC if it says nothing): the order across streams."""
    try:
        made = datetime.fromisoformat(record["created_at"])
    except (KeyError, TypeError, ValueError):
        return EARLIEST
    return made if made.tzinfo else made.replace(tzinfo=UTC)


def folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            total += path.stat().st_size if path.is_file() else 0
        except FileNotFoundError:
            pass
    return total


class BufferFolder:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.held_path = self.folder / HELD
        self.corrupt_lines = 0  # unreadable lines (a crash mid-append), skipped

    @contextmanager
    def drain_lock(self) -> Iterator[bool]:
        """Yields True to the one caller that may drain now, False to everyone else."""
        with open(self.folder / DRAIN_LOCK, "ab") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True  # closing the file releases the lock

    def size(self) -> int:
        """Bytes the buffer holds (what the cap counts): every stream and the held records."""
        total = sum(folder_bytes(stream) for stream in self.folder.glob(STREAM_GLOB))
        for path in [self.held_path, *self.folder.glob(LEGACY_GLOB)]:
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def pending(self) -> bool:
        """True while any writer's records (or held feedback) are not in PostgreSQL yet."""
        segments = [
            *self.folder.glob(f"{STREAM_GLOB}/{SEGMENT_GLOB}"),
            *self.folder.glob(LEGACY_GLOB),
        ]
        for segment in segments:
            try:
                if segment.stat().st_size > read_done(segment)[0]:
                    return True
            except FileNotFoundError:
                pass
        return bool(self.held())

    # ------------------------------------------------------------------ draining (under the lock)
    def read(self, limit: int) -> Batch:
        """Up to `limit` records of each stream, past where the last drain stopped, merged by
        record time (each stream's own order is kept)."""
        batch, per_stream = Batch(), []
        for stream in sorted(self.folder.glob(STREAM_GLOB)):
            alive = _locked_by_someone(stream / OWNER_LOCK)  # before listing: see _read_stream
            per_stream.append(self._read_stream(sorted(stream.glob(SEGMENT_GLOB)), alive, limit,
                                                batch))  # fmt: skip
            if not alive:
                batch.dead.append(stream)
        for segment in sorted(self.folder.glob(LEGACY_GLOB)):
            if not _locked_by_someone(segment):
                per_stream.append(self._read_stream([segment], False, limit, batch))
        batch.records = list(heapq.merge(*per_stream, key=_time))
        return batch

    def _read_stream(self, segments: list[Path], alive: bool, limit: int, batch: Batch):
        """In order, stopping at the first segment not read to its end. A segment is sealed
        when a later one was listed (its writer moved on before creating that one) or when
        its writer was already dead when the stream was listed."""
        records: list[dict] = []
        for i, segment in enumerate(segments):
            sealed = i < len(segments) - 1 or not alive
            cursor, got = self._read_segment(segment, sealed, limit - len(records))
            batch.cursors.append(cursor)
            records += got
            if not cursor.finished or len(records) >= limit:
                break
        return records

    def _read_segment(self, segment: Path, sealed: bool, limit: int) -> tuple[Cursor, list]:
        offset, lines = read_done(segment)
        try:
            with open(segment, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if offset > size or (offset and os.pread(f.fileno(), 1, offset - 1) != b"\n"):
                    offset, lines = 0, 0  # a torn record of progress: all again (ids dedupe)
                start = f.seek(offset)
                data = f.read(READ_BYTES)
        except FileNotFoundError:
            return Cursor(segment, 0, 0, 0, finished=False), []
        records, pos = [], 0
        while len(records) < limit and (end := data.find(b"\n", pos)) >= 0:
            self._parse(data[pos:end], segment, records)
            pos, lines = end + 1, lines + 1
        tail = data[pos:]
        if sealed and tail and b"\n" not in tail and offset + len(data) >= size:
            self.corrupt_lines += 1  # an append cut short by a crash: never acknowledged
            log.warning("skipping a torn log-buffer line at the end of %s", segment)
            pos, lines = len(data), lines + 1
        offset += pos
        return Cursor(segment, start, offset, lines, sealed and offset >= size), records

    def _parse(self, line: bytes, segment: Path, records: list[dict]) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            self.corrupt_lines += 1
            log.warning("skipping an unreadable log-buffer line in %s", segment)

    def commit(self, batch: Batch) -> None:
        """Everything `batch` read is in PostgreSQL: record it, delete what is finished."""
        for cursor in batch.cursors:
            if cursor.finished:
                cursor.segment.unlink(missing_ok=True)
                done_path(cursor.segment).unlink(missing_ok=True)
            elif cursor.offset != cursor.start:
                write_done(cursor.segment, cursor.offset, cursor.lines)
        for stream in batch.dead:
            if not any(stream.glob(SEGMENT_GLOB)):
                for path in stream.iterdir():
                    path.unlink(missing_ok=True)
                stream.rmdir()

    # ------------------------------------------------------------------ held feedback
    def hold(self, records: list[dict], since: float) -> None:
        """Keep records for a later retry (durably: the stream they came from moves on)."""
        with open(self.held_path, "ab") as f:
            for record in records:
                f.write(json.dumps({"held_since": since, "record": record}).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())

    def held(self) -> list[dict]:
        try:
            data = self.held_path.read_bytes()
        except FileNotFoundError:
            return []
        entries: list[dict] = []
        for line in data.splitlines():
            self._parse(line, self.held_path, entries)
        return [e for e in entries if isinstance(e.get("record"), dict)]

    def replace_held(self, entries: list[dict]) -> None:
        if not entries:
            self.held_path.unlink(missing_ok=True)
            return
        tmp = self.held_path.with_suffix(".new")
        with open(tmp, "wb") as f:
            f.write(b"".join(json.dumps(e).encode() + b"\n" for e in entries))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.held_path)
