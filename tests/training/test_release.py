"""The release version shipped in training/data/release: checksums, import, and that it ranks
as its release.json says (real S3, the shipped artifact itself)."""

from __future__ import annotations

import json
import shutil
import uuid

import pytest

from cluster.artifacts import ArtifactStore
from training import datasets
from training.evaluation.metrics import evaluate_run
from training.evaluation.runs import dense_ranking, dense_run
from training.model import QueryEncoder
from training.pipeline import ensure_version
from training.release import (
    ARCHIVE_FILE,
    RELEASE_DIR,
    RELEASE_FILE,
    ReleaseError,
    export_release,
    import_release,
    read_release,
    unpack,
)


def fresh_store(settings, tmp_path) -> tuple:
    """Settings and a store on a bucket of their own: an empty artifact store."""
    own = settings.model_copy(
        update={"s3_bucket": f"rel-{uuid.uuid4().hex[:12]}", "model_cache_dir": tmp_path / "c"}
    )
    return own, ArtifactStore.from_settings(own)


def test_the_shipped_release_is_complete_and_matches_its_checksums(tmp_path):
    release = read_release()
    assert release["weights_dtype"] == "float16"
    reproduce = release["reproduce"]
    assert reproduce["profile"] == "full" and isinstance(reproduce["seed"], int)
    assert f"TWOTOWER_SEED={reproduce['seed']}" in reproduce["command"]
    assert len(reproduce["commit"]) == 40
    unpack(RELEASE_DIR, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(release["files"])
    # What one release adds to every clone stays small.
    assert (RELEASE_DIR / ARCHIVE_FILE).stat().st_size < 30 * 2**20


def test_a_damaged_release_is_refused_and_nothing_is_stored(settings, tmp_path):
    own, store = fresh_store(settings, tmp_path)
    damaged = tmp_path / "damaged"
    shutil.copytree(RELEASE_DIR, damaged)
    archive = damaged / ARCHIVE_FILE
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(ReleaseError, match="does not match release.json"):
        import_release(store, damaged, progress=False)
    assert store.list_versions() == [] and store.latest() is None

    shutil.copy2(RELEASE_DIR / ARCHIVE_FILE, archive)  # a sound archive, a wrong file entry
    release = json.loads((damaged / RELEASE_FILE).read_text())
    first = sorted(release["files"])[0]
    release["files"][first]["sha256"] = "0" * 64
    (damaged / RELEASE_FILE).write_text(json.dumps(release))
    with pytest.raises(ReleaseError, match=f"{first} in .* does not match its checksum"):
        import_release(store, damaged, progress=False)
    assert store.list_versions() == []


def test_an_empty_store_gets_the_release_live_and_it_ranks_as_shipped(settings, tmp_path):
    own, store = fresh_store(settings, tmp_path)
    release = read_release()
    assert ensure_version(own, log=lambda _: None) == release["version"]
    assert store.latest() == release["version"]
    manifest = store.manifest(release["version"])
    assert manifest.extra["release"]["reproduce"] == release["reproduce"]
    assert manifest.metrics["dl19"] == release["metrics"]["dl19"]

    version_dir = store.download(release["version"])
    for split in ("dev", "dl19"):
        got = evaluate_run(
            dense_run(version_dir, datasets.load_queries(split)), datasets.load_qrels(split)
        )
        for column, value in release["metrics"][split].items():
            assert got[column] == pytest.approx(value, abs=0.002), (split, column)
    # It encodes like any version: unit vectors, a botulism query nearest botulism passages.
    vector = QueryEncoder.load(version_dir).encode(["what causes botulism"])
    assert vector.shape == (1, 384) and abs(float((vector**2).sum()) - 1) < 1e-4
    top = dense_ranking(version_dir, {"q": "what causes botulism"}, k=2)["q"]
    text_of = datasets.load_collection().text_of()
    assert all("botulism" in text_of[d].lower() for d in top), top

    again = ensure_version(own, log=lambda _: None)  # a second start imports nothing
    assert again == release["version"] and store.list_versions() == [release["version"]]


def test_a_live_version_is_kept_and_the_release_is_not_imported(
    settings, tmp_path, tiny_version_dir
):
    own, store = fresh_store(settings, tmp_path)
    live = store.publish(tiny_version_dir).version
    assert ensure_version(own, log=lambda _: None) == live
    assert store.list_versions() == [live]


def test_exported_release_imports_to_the_metrics_it_records(settings, tmp_path, tiny_version_dir):
    """export → import round trip on the tiny version (float16 weights, index rebuilt)."""
    own, store = fresh_store(settings, tmp_path)
    target = tmp_path / "release"
    reproduce = {"command": "test", "seed": 13, "profile": "tiny", "overrides": [], "commit": "0"}
    made = export_release(tiny_version_dir, target, reproduce, "tiny", log=lambda _: None)
    assert (
        made["files"]["weights.fp16.pt"]["size"] < (tiny_version_dir / "weights.pt").stat().st_size
    )
    version = import_release(store, target, log=lambda _: None, progress=False)
    assert version == tiny_version_dir.name and store.latest() is None  # stored, not live
    version_dir = store.download(version)
    got = evaluate_run(
        dense_run(version_dir, datasets.load_queries("dl19")), datasets.load_qrels("dl19")
    )
    assert got == pytest.approx(made["metrics"]["dl19"], abs=1e-6)
