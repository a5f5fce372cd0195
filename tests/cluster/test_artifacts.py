"""The artifact store against a real S3 server (SeaweedFS)."""

from __future__ import annotations

import io
import json
import threading
import uuid
from pathlib import Path

import pytest

from cluster.artifacts import (
    ArtifactError,
    ArtifactStore,
    CorruptArtifact,
    VersionExists,
    VersionNotFound,
    sha256_file,
)


@pytest.fixture
def store(settings, tmp_path) -> ArtifactStore:
    """A store on its own fresh bucket, so tests do not see each other's versions."""
    isolated = settings.model_copy(
        update={"s3_bucket": f"art-{uuid.uuid4().hex[:12]}", "model_cache_dir": tmp_path / "cache"}
    )
    return ArtifactStore.from_settings(isolated)


def make_version_dir(root: Path, tag: str, weight_bytes: int = 4096) -> Path:
    """A small but complete version folder; every file embeds `tag` so mixes are detectable."""
    folder = root / tag
    (folder / "index").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"tag": tag, "dim": 8}))
    (folder / "metrics.json").write_text(json.dumps({"tag": tag, "dev": {"MRR@10": 0.1}}))
    (folder / "tokenizer.json").write_text(json.dumps({"tag": tag, "vocab": ["a", "b"]}))
    (folder / "weights.pt").write_bytes(tag.encode() + bytes(weight_bytes))
    (folder / "index" / "shard-000.faiss").write_bytes(tag.encode() * 100)
    return folder


def test_publish_read_and_roll_back(store, tmp_path):
    first = store.publish(make_version_dir(tmp_path, "one"))
    second = store.publish(
        make_version_dir(tmp_path, "two"), parent=first.version, extra={"note": "x"}
    )

    assert store.latest() == second.version
    assert store.list_versions() == [first.version, second.version]

    manifest = store.manifest(second.version)
    assert manifest.parent == first.version
    assert manifest.metrics == {"tag": "two", "dev": {"MRR@10": 0.1}}
    assert manifest.config == {"tag": "two", "dim": 8}
    assert manifest.extra == {"note": "x"}
    source = tmp_path / "two" / "index" / "shard-000.faiss"
    assert manifest.files["index/shard-000.faiss"].sha256 == sha256_file(source)
    assert manifest.files["index/shard-000.faiss"].size == source.stat().st_size

    local = store.download(second.version)
    assert (local / "weights.pt").read_bytes() == (tmp_path / "two" / "weights.pt").read_bytes()
    assert json.loads((local / "manifest.json").read_text())["version"] == second.version

    assert store.rollback() == first.version
    assert store.latest() == first.version
    with pytest.raises(ArtifactError, match="nothing to roll back"):
        store.rollback()

    store.set_latest(second.version)
    assert store.history() == [first.version]
    assert store.rollback(to=first.version) == first.version
    assert store.latest() == first.version


def test_versions_are_immutable_and_ids_checked(store, tmp_path):
    folder = make_version_dir(tmp_path, "one")
    manifest = store.upload_version(folder, version="v-fixed")
    assert store.latest() is None  # upload alone does not make a version live
    with pytest.raises(VersionExists):
        store.upload_version(folder, version=manifest.version)
    with pytest.raises(ValueError, match="invalid version id"):
        store.upload_version(folder, version="../escape")
    with pytest.raises(VersionNotFound):
        store.set_latest("v-missing")
    with pytest.raises(VersionNotFound):
        store.upload_version(folder, parent="v-missing")
    with pytest.raises(ValueError, match="redefine"):
        store.upload_version(folder, extra={"files": {}})


def test_a_version_without_manifest_does_not_exist(store, tmp_path):
    data = b"half-written"
    store.client.put_object(
        store.bucket, "models/v-partial/weights.pt", io.BytesIO(data), len(data)
    )
    assert "v-partial" not in store.list_versions()
    with pytest.raises(VersionNotFound):
        store.manifest("v-partial")
    with pytest.raises(VersionNotFound):
        store.set_latest("v-partial")


def test_reader_racing_a_publisher_never_sees_a_partial_version(store, tmp_path):
    published: list[str] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def publisher():
        try:
            for i in range(5):
                folder = make_version_dir(tmp_path / "src", f"t{i}", weight_bytes=200_000)
                published.append(store.publish(folder).version)
        except BaseException as err:  # surfaced by the assertion below
            errors.append(err)
        finally:
            done.set()

    thread = threading.Thread(target=publisher)
    thread.start()
    reads = 0
    while not done.is_set() or reads == 0:
        version = store.latest()
        for listed in store.list_versions():
            assert set(store.manifest(listed).files) >= {"weights.pt", "index/shard-000.faiss"}
        if version is None:
            continue
        local = store.download(version, cache_dir=tmp_path / "reader-cache")
        tags = {
            json.loads((local / "config.json").read_text())["tag"],
            json.loads((local / "tokenizer.json").read_text())["tag"],
            (local / "weights.pt").read_bytes()[:2].decode(),
        }
        assert len(tags) == 1, f"version {version} mixes files of {tags}"
        reads += 1
    thread.join()
    assert not errors, errors
    assert len(published) == 5 and store.latest() == published[-1]
    print(f"reader completed {reads} verified reads while 5 versions were published")


def test_corruption_is_detected_remotely_and_repaired_locally(store, tmp_path):
    version = store.publish(make_version_dir(tmp_path, "one")).version
    local = store.download(version)

    # A damaged cache file is refused and fetched again.
    (local / "weights.pt").write_bytes(b"garbage")
    store.download(version)
    assert (local / "weights.pt").read_bytes() == (tmp_path / "one" / "weights.pt").read_bytes()

    # A damaged remote file can never be repaired by re-fetching: a clear error, nothing cached.
    bad = b"tampered weights"
    store.client.put_object(store.bucket, f"models/{version}/weights.pt", io.BytesIO(bad), len(bad))
    fresh = tmp_path / "fresh-cache"
    with pytest.raises(CorruptArtifact, match="weights.pt does not match its manifest"):
        store.download(version, cache_dir=fresh)
    assert not (fresh / version / "weights.pt").exists()
