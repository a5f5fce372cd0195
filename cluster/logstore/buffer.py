"""A bounded on-disk buffer for log records written while PostgreSQL is unreachable.

Records are JSON lines in segment files `<folder>/seg-<ns>-<pid>-<rand>.jsonl`. The segment a
process is appending to is held under an exclusive `flock`; a drainer takes the same lock
(non-blocking) before reading a segment and deletes it only after its records are in the
database. Segments left by a dead process are therefore drained by whichever process is alive.
Several processes (Serve replicas) can share one folder. The folder's total size is capped at
`max_bytes`; past the cap a record is dropped and counted, never blocking the caller.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)
SEGMENT_BYTES = 4 * 1024 * 1024


class DiskBuffer:
    def __init__(self, folder: Path, max_bytes: int, segment_bytes: int = SEGMENT_BYTES):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.appended = 0  # records this process put on disk
        self.dropped = 0  # records refused because the buffer was full
        self.corrupt_lines = 0  # unreadable lines (a crash mid-write), skipped
        self._lock = threading.Lock()
        self._current = None  # (path, file) of the segment this process appends to
        self._size = self._disk_size()

    def _segments(self) -> list[Path]:
        return sorted(self.folder.glob("seg-*.jsonl"))

    def _disk_size(self) -> int:
        total = 0
        for path in self._segments():
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                pass
        return total

    @property
    def size(self) -> int:
        return self._size

    def pending(self) -> bool:
        """True when any segment (ours or one left by another process) holds records."""
        return any(p.stat().st_size > 0 for p in self._segments() if p.exists())

    def append(self, records: list[dict]) -> int:
        """Append and fsync; returns how many records were stored (the rest were dropped)."""
        lines = [json.dumps(r, separators=(",", ":")) + "\n" for r in records]
        stored = 0
        with self._lock:
            for line in lines:
                data = line.encode()
                if self._size + len(data) > self.max_bytes:
                    self.dropped += 1
                    continue
                f = self._segment_for_write()
                f.write(data)
                self._size += len(data)
                stored += 1
            self.appended += stored
            if self._current is not None:
                self._current[1].flush()
                os.fsync(self._current[1].fileno())
        if stored < len(records):
            log.error(
                "log buffer full (%d bytes): dropped %d records",
                self.max_bytes,
                len(records) - stored,
            )
        return stored

    def _segment_for_write(self):
        if self._current is not None and self._current[1].tell() >= self.segment_bytes:
            self._close_current()
        if self._current is None:
            name = f"seg-{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(3)}.jsonl"
            tmp = self.folder / ("." + name + ".new")
            f = open(tmp, "ab")
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # locked before drainers can see it
            os.replace(tmp, self.folder / name)
            self._current = (self.folder / name, f)
        return self._current[1]

    def _close_current(self) -> None:
        if self._current is not None:
            path, f = self._current
            f.close()  # releases the flock
            self._current = None
            if path.exists() and path.stat().st_size == 0:
                path.unlink(missing_ok=True)

    def drain(self, write: Callable[[list[dict]], None]) -> int:
        """Hand every unlocked segment, oldest first, to `write`; delete it once written.

        `write` raising stops the drain and leaves that segment (and later ones) in place, so
        order is kept and nothing is lost. Returns the number of records handed over.
        """
        with self._lock:
            self._close_current()  # our own segment becomes drainable
        handed = 0
        for path in self._segments():
            try:
                f = open(path, "rb")
            except FileNotFoundError:
                continue  # another drainer finished it
            with f:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # still being written by its owner, or drained by another process
                if not path.exists():
                    continue  # drained and deleted between our listing and our lock
                records = self._read(f)
                if records:
                    write(records)
                handed += len(records)
                path.unlink(missing_ok=True)
        with self._lock:
            self._size = self._disk_size()
        return handed

    def _read(self, f) -> list[dict]:
        records = []
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:
                self.corrupt_lines += 1
                log.warning("skipping an unreadable log-buffer line in %s", f.name)
        return records

    def close(self) -> None:
        with self._lock:
            self._close_current()
