"""The artifact store: immutable model versions in S3, and a `LATEST` pointer.

Layout (bucket `settings.s3_bucket`)::

    models/<version>/...            every file of the version, uploaded first
    models/<version>/manifest.json  written LAST: a version without a manifest does not exist
    models/LATEST                   {"version": ..., "history": [older live versions, newest first]}

Publishing is atomic for readers: files, then the manifest, then one small PUT of `LATEST`.
A reader that follows `LATEST` (or `list_versions`) therefore only ever sees complete versions.
Only plain S3 calls are used, so the same code runs on SeaweedFS and MinIO.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from minio import Minio
from minio.error import S3Error
from pydantic import BaseModel, ConfigDict, Field

from cluster.config import Settings

PREFIX = "models/"
LATEST_KEY = PREFIX + "LATEST"
MANIFEST = "manifest.json"
HISTORY_LIMIT = 50
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
RESERVED = {"version", "parent", "created_at", "files", "metrics", "config"}


class ArtifactError(Exception):
    """Base class for artifact store errors."""


class VersionNotFound(ArtifactError, LookupError):
    pass


class VersionExists(ArtifactError, FileExistsError):
    pass


class CorruptArtifact(ArtifactError):
    """A stored file does not match its manifest checksum, even after re-fetching it."""


class FileEntry(BaseModel):
    sha256: str
    size: int


class Manifest(BaseModel):
    """What a version holds. Extra top-level fields (e.g. `training`, `reinforce`) are kept."""

    model_config = ConfigDict(extra="allow")

    version: str
    parent: str | None = None
    created_at: str
    files: dict[str, FileEntry]
    metrics: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)

    @property
    def extra(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_version(version: str) -> str:
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise ValueError(
            f"invalid version id {version!r}: use 1-128 letters, digits, '.', '_' or '-'"
        )
    return version


def _safe_relpath(relpath: str) -> str:
    parts = Path(relpath).parts
    if not parts or Path(relpath).is_absolute() or ".." in parts:
        raise CorruptArtifact(f"manifest names an unsafe path {relpath!r}")
    return relpath


def minio_client(settings: Settings) -> Minio:
    """An S3 client for the configured server (SeaweedFS locally, MinIO in compose)."""
    endpoint = settings.s3_address
    secure = settings.s3_secure
    if "://" in endpoint:  # accept "http://host:port" as well as "host:port"
        parsed = urlparse(endpoint)
        endpoint, secure = parsed.netloc, parsed.scheme == "https"
    return Minio(
        endpoint,
        access_key=settings.s3_access_key.get_secret_value(),
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=secure,
        region=settings.s3_region,
    )


class ArtifactStore:
    def __init__(self, client: Minio, bucket: str, cache_dir: Path):
        self.client = client
        self.bucket = bucket
        self.cache_dir = Path(cache_dir)
        self._ensure_bucket()

    @classmethod
    def from_settings(cls, settings: Settings) -> ArtifactStore:
        return cls(minio_client(settings), settings.s3_bucket, settings.cache_dir)

    def _ensure_bucket(self) -> None:
        if self.client.bucket_exists(self.bucket):
            return
        try:
            self.client.make_bucket(self.bucket)
        except S3Error as err:  # another process created it first
            if err.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    # ------------------------------------------------------------------ small S3 helpers
    def get_bytes(self, key: str) -> bytes | None:
        """The object at ``key`` in the bucket, None if there is none."""
        try:
            response = self.client.get_object(self.bucket, key)
        except S3Error as err:
            if err.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return None
            raise
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def put_json(self, key: str, payload: dict) -> None:
        """One small JSON object at ``key`` (pointers, manifests, the held-out traffic day)."""
        data = json.dumps(payload, indent=2, sort_keys=True).encode()
        self.client.put_object(
            self.bucket, key, io.BytesIO(data), len(data), content_type="application/json"
        )

    def _exists(self, key: str) -> bool:
        try:
            self.client.stat_object(self.bucket, key)
            return True
        except S3Error as err:
            if err.code in ("NoSuchKey", "NoSuchObject", "NotFound", "ResourceNotFound"):
                return False
            raise

    # ------------------------------------------------------------------ writing
    @staticmethod
    def new_version_id() -> str:
        """Sortable by creation time, unique across publishers: v20261127-041502-ab12."""
        return f"v{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"

    def upload_version(
        self,
        local_dir: Path,
        version: str | None = None,
        parent: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Manifest:
        """Upload every file of `local_dir` as a new immutable version; the manifest goes last."""
        local_dir = Path(local_dir)
        version = _check_version(version or self.new_version_id())
        extra = dict(extra or {})
        clash = RESERVED & extra.keys()
        if clash:
            raise ValueError(f"extra manifest fields may not redefine {sorted(clash)}")
        if parent is not None and not self._exists(self._manifest_key(_check_version(parent))):
            raise VersionNotFound(f"parent version {parent!r} does not exist")
        if not local_dir.is_dir():
            raise FileNotFoundError(f"{local_dir} is not a folder")
        paths = sorted(
            p
            for p in local_dir.rglob("*")
            if p.is_file() and p.relative_to(local_dir) != Path(MANIFEST)
        )
        if not paths:
            raise ValueError(f"{local_dir} holds no files to publish")
        if self._exists(self._manifest_key(version)):
            raise VersionExists(f"version {version!r} already exists and is immutable")

        files: dict[str, FileEntry] = {}
        for path in paths:
            rel = path.relative_to(local_dir).as_posix()
            files[rel] = FileEntry(sha256=sha256_file(path), size=path.stat().st_size)
            self.client.fput_object(self.bucket, f"{PREFIX}{version}/{rel}", str(path))

        manifest = Manifest(
            version=version,
            parent=parent,
            created_at=datetime.now(UTC).isoformat(timespec="microseconds"),
            files=files,
            metrics=self._read_json(local_dir / "metrics.json"),
            config=self._read_json(local_dir / "config.json"),
            **extra,
        )
        if self._exists(self._manifest_key(version)):  # a concurrent publisher won the race
            raise VersionExists(f"version {version!r} was completed by another publisher")
        self.put_json(self._manifest_key(version), manifest.model_dump(mode="json"))
        return manifest

    @staticmethod
    def _read_json(path: Path) -> dict:
        return json.loads(path.read_text()) if path.exists() else {}

    def publish(
        self, local_dir: Path, parent: str | None = None, extra: dict[str, Any] | None = None
    ) -> Manifest:
        """Upload a new version, then make it the live one."""
        manifest = self.upload_version(local_dir, parent=parent, extra=extra)
        self.set_latest(manifest.version)
        return manifest

    # ------------------------------------------------------------------ the LATEST pointer
    def _pointer(self) -> dict:
        raw = self.get_bytes(LATEST_KEY)
        return json.loads(raw) if raw else {"version": None, "history": []}

    def latest(self) -> str | None:
        return self._pointer()["version"]

    def history(self) -> list[str]:
        """Versions that were live before the current one, newest first."""
        return list(self._pointer()["history"])

    def set_latest(self, version: str) -> None:
        """Make `version` live with one small PUT; the old live version goes onto the history.

        Two concurrent pointer moves are last-writer-wins (plain S3 has no compare-and-swap):
        publishers (the pipeline, the learning loop, the CLI) serialise themselves."""
        _check_version(version)
        if not self._exists(self._manifest_key(version)):
            raise VersionNotFound(f"version {version!r} does not exist (no manifest)")
        pointer = self._pointer()
        if pointer["version"] == version:
            return
        older = [pointer["version"], *pointer["history"]] if pointer["version"] else []
        history = [v for v in older if v != version][:HISTORY_LIMIT]
        self.put_json(LATEST_KEY, {"version": version, "history": history})

    def rollback(self, to: str | None = None) -> str:
        """Go back to the previous live version (or to `to`); returns the new live version."""
        pointer = self._pointer()
        current, history = pointer["version"], list(pointer["history"])
        if to is None:
            if not history:
                raise ArtifactError("nothing to roll back to: no earlier live version")
            to, rest = history[0], history[1:]
        else:
            _check_version(to)
            if not self._exists(self._manifest_key(to)):
                raise VersionNotFound(f"version {to!r} does not exist (no manifest)")
            if to in history:
                rest = history[history.index(to) + 1 :]
            else:
                rest = [v for v in [current, *history] if v and v != to]
        self.put_json(LATEST_KEY, {"version": to, "history": rest[:HISTORY_LIMIT]})
        return to

    # ------------------------------------------------------------------ reading
    @staticmethod
    def _manifest_key(version: str) -> str:
        return f"{PREFIX}{version}/{MANIFEST}"

    def list_versions(self) -> list[str]:
        """Complete versions (those with a manifest), oldest first."""
        found = []
        for obj in self.client.list_objects(self.bucket, prefix=PREFIX, recursive=True):
            parts = obj.object_name[len(PREFIX) :].split("/")
            if len(parts) == 2 and parts[1] == MANIFEST:
                found.append((obj.last_modified, parts[0]))
        # S3 times have 1 s resolution: versions completed in the same second are ordered by
        # their manifests' microsecond `created_at`.
        stamps = [t for t, _ in found]
        tied = {v for t, v in found if stamps.count(t) > 1}
        created = {v: self.manifest(v).created_at for v in tied}
        return [v for _, _, v in sorted((t, created.get(v, ""), v) for t, v in found)]

    def manifest(self, version: str) -> Manifest:
        raw = self.get_bytes(self._manifest_key(_check_version(version)))
        if raw is None:
            raise VersionNotFound(f"version {version!r} does not exist (no manifest)")
        return Manifest.model_validate_json(raw)

    def download(self, version: str, cache_dir: Path | None = None) -> Path:
        """A local, checksum-verified copy of `version` (files already cached and intact are kept).

        A local file that does not match the manifest is re-fetched; a remote file that still does
        not match after a second fetch raises CorruptArtifact, and is never left in the cache.
        """
        manifest = self.manifest(version)
        target = Path(cache_dir or self.cache_dir) / version
        target.mkdir(parents=True, exist_ok=True)
        for rel, entry in manifest.files.items():
            path = target / _safe_relpath(rel)
            if (
                path.exists()
                and path.stat().st_size == entry.size
                and sha256_file(path) == entry.sha256
            ):
                continue
            self._fetch_verified(f"{PREFIX}{version}/{rel}", path, entry)
        (target / MANIFEST).write_text(manifest.model_dump_json(indent=2))
        return target

    def _fetch_verified(self, key: str, path: Path, entry: FileEntry, attempts: int = 2) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(attempts):
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            os.close(fd)
            try:
                self.client.fget_object(self.bucket, key, tmp)
                got = sha256_file(Path(tmp))
                if got == entry.sha256 and os.path.getsize(tmp) == entry.size:
                    os.replace(tmp, path)  # atomic: concurrent readers never see half a file
                    return
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        raise CorruptArtifact(
            f"s3://{self.bucket}/{key} does not match its manifest "
            f"(expected sha256 {entry.sha256}, {entry.size} bytes; got sha256 {got})"
        )
