"""The write side of the log buffer: each writer process's own write-ahead file.

A record is appended (and fsync'd) here before `log_search` / `log_feedback` return, so an
answered search survives a SIGKILL of its process a moment later. Layout, in the buffer folder:

    <buffer>/w-<ns>-<pid>-<rand>/        one stream per writer process, never shared
        owner.lock                       flock'd by its writer for life; the kernel releases it
                                         when the process dies, even by SIGKILL
        wal-0000000001.jsonl             segments of JSON lines, appended in log order
        wal-0000000001.done              how far the drainer has written it ("offset lines")

Only the owner appends; the drainer (buffer.py, one at a time over every stream) reads and
deletes. A segment is sealed once a later one exists or its owner is dead, and only then
deleted. The folder's total size is capped: past the cap a record is dropped and counted.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)
SEGMENT_BYTES = 4 * 1024 * 1024
STREAM_GLOB = "w-*"
SEGMENT_GLOB = "wal-*.jsonl"
OWNER_LOCK = "owner.lock"


def segment_path(stream: Path, seq: int) -> Path:
    return stream / f"wal-{seq:010d}.jsonl"


def segment_seq(path: Path) -> int:
    return int(path.stem.split("-")[1])


def done_path(segment: Path) -> Path:
    return segment.with_suffix(".done")


def read_done(segment: Path) -> tuple[int, int]:
    """(byte offset, lines) of `segment` already in PostgreSQL; (0, 0) if unknown."""
    try:
        offset, lines = done_path(segment).read_text().split()
        return int(offset), int(lines)
    except (OSError, ValueError):
        return 0, 0


def write_done(segment: Path, offset: int, lines: int) -> None:
    """Not fsync'd: if a crash loses it, the records are written again, and ignored by
    PostgreSQL (ON CONFLICT DO NOTHING on their ids)."""
    tmp = segment.with_suffix(".done-new")
    tmp.write_text(f"{offset} {lines}\n")
    os.replace(tmp, done_path(segment))


def fsync_dir(folder: Path) -> None:
    """A new file or folder survives a crash only once its parent directory is synced."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteAheadLog:
    """This process's stream. `append` is thread-safe and returns once the record is on disk."""

    def __init__(self, root: Path, max_bytes: int, *, fsync: bool = True,
                 segment_bytes: int = SEGMENT_BYTES):  # fmt: skip
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        name = f"w-{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(3)}"
        # Made under a name the drainer does not list, and renamed (atomically) once its lock
        # is held: a drainer that saw the folder before its lock would take it for a dead
        # writer's empty stream and remove it, and every record would then be dropped.
        making = self.root / f".{name}"
        making.mkdir()
        self._owner = open(making / OWNER_LOCK, "ab")
        fcntl.flock(self._owner.fileno(), fcntl.LOCK_EX)
        self.folder = self.root / name
        os.rename(making, self.folder)
        fsync_dir(self.root)
        self.appended = 0  # records this process put on disk
        self.dropped = 0  # records refused because the folder was full
        self.lines: dict[int, int] = {}  # segment number -> records appended to it
        self._lock = threading.Lock()
        self._seq = 0
        self._file = None
        self._closed = False
        self._known_bytes = 0  # the folder's size, set by `refresh` (the writer thread)
        self._since_refresh = 0

    def append(self, row: dict) -> bool:
        """Write one record and fsync it; False (and counted) when it could not be stored:
        the folder is full, the disk failed, or the log is closed."""
        data = (json.dumps(row, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._closed or self._known_bytes + self._since_refresh + len(data) > self.max_bytes:
                self.dropped += 1
                return False
            try:
                self._write(data)
            except OSError:
                log.exception("could not write a log record to %s", self.folder)
                self.dropped += 1
                return False
            self._since_refresh += len(data)
            self.lines[self._seq] += 1
            self.appended += 1
        return True

    def _write(self, data: bytes) -> None:
        f = self._segment()
        start = f.tell()
        try:
            view = memoryview(data)
            while view:
                view = view[f.write(view) :]
            if self.fsync:
                os.fdatasync(f.fileno())
        except OSError:
            f.truncate(start)  # never leave half a line for the next record to follow
            raise

    def _segment(self):
        if self._file is not None and self._file.tell() >= self.segment_bytes:
            self._file.close()  # every line in it was synced when it was appended
            self._file = None
        if self._file is None:
            self._seq += 1
            self._file = open(segment_path(self.folder, self._seq), "ab", buffering=0)
            self.lines[self._seq] = 0
            if self.fsync:
                fsync_dir(self.folder)
        return self._file

    def refresh(self, total_bytes: int) -> None:
        """The folder's measured size, for the cap (appends since are added to it)."""
        with self._lock:
            self._known_bytes = total_bytes
            self._since_refresh = 0

    def position(self) -> tuple[int, int]:
        """(segment, lines in it) of the last record appended so far."""
        with self._lock:
            return self._seq, self.lines.get(self._seq, 0)

    def backlog(self, upto: tuple[int, int] | None = None) -> int:
        """Records this process appended (up to `upto`) that are not in PostgreSQL yet."""
        with self._lock:
            lines, current = dict(self.lines), self._seq
        waiting = 0
        for seq, count in lines.items():
            if upto is not None and seq > upto[0]:
                continue
            count = upto[1] if upto is not None and seq == upto[0] else count
            path = segment_path(self.folder, seq)
            if path.exists():
                waiting += max(0, count - read_done(path)[1])
            elif seq != current:  # deleted by the drainer once all of it was written
                with self._lock:
                    self.lines.pop(seq, None)
        return waiting

    def close(self) -> None:
        """Release the stream: it is now a dead writer's, drained (then removed) by anyone."""
        with self._lock:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None
            self._owner.close()
