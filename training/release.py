"""The release version: a trained version shipped inside the repository.

A fresh clone serves a good model without training one. ``training/data/release/`` holds::

    release.json     what the release is: its version id, how to reproduce it (command, seed,
                     code commit), its metrics, and the sha256 of the archive and of each file
    version.tar.xz   config.json, tokenizer.json, metrics.json and weights.fp16.pt

The weights ship in float16 to keep the clone small; they are widened back to float32 on
import, so serving and fine-tuning see an ordinary version. The Faiss shards are not shipped:
``materialise`` builds them from the shipped collection, which costs less than carrying the
vectors in every clone (docs/results/quality.md, "The release version"). ``metrics.json`` is
the evaluation of the version as imported (float16 weights, rebuilt index), so
``twotower eval`` on an imported release reproduces it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch

from cluster.artifacts import ArtifactStore, VersionNotFound, sha256_file
from cluster.config import REPO_ROOT
from training import datasets
from training.evaluation.metrics import evaluate_run
from training.evaluation.runs import dense_run
from training.index import IndexConfig, build_shards
from training.model import CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE, encode_texts, load_model
from training.version import METRICS_FILE

RELEASE_DIR = REPO_ROOT / "training" / "data" / "release"
RELEASE_FILE = "release.json"
ARCHIVE_FILE = "version.tar.xz"
HALF_WEIGHTS_FILE = "weights.fp16.pt"
SHIPPED = (CONFIG_FILE, TOKENIZER_FILE, METRICS_FILE, HALF_WEIGHTS_FILE)
EVAL_SPLITS = ("dev", "dl19")


class ReleaseError(RuntimeError):
    """The release is missing, incomplete or does not match its checksums."""


def read_release(release_dir: Path = RELEASE_DIR) -> dict:
    path = Path(release_dir) / RELEASE_FILE
    if not path.exists():
        raise ReleaseError(f"no release at {release_dir} (missing {RELEASE_FILE})")
    return json.loads(path.read_text())


def has_release(release_dir: Path = RELEASE_DIR) -> bool:
    return (Path(release_dir) / RELEASE_FILE).exists()


def _entry(path: Path) -> dict:
    return {"sha256": sha256_file(path), "size": path.stat().st_size}


def unpack(release_dir: Path, out_dir: Path) -> dict:
    """Check the archive and every file in it against release.json, extract into ``out_dir``;
    returns release.json. Nothing is extracted from an archive whose checksum is wrong."""
    release = read_release(release_dir)
    archive = Path(release_dir) / ARCHIVE_FILE
    if not archive.exists():
        raise ReleaseError(f"the release names {ARCHIVE_FILE}, which is missing from {release_dir}")
    if _entry(archive) != release["archive"]:
        raise ReleaseError(
            f"{archive} does not match release.json (expected sha256 "
            f"{release['archive']['sha256']}); fetch the file again (git lfs or a fresh clone)"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:xz") as tar:
        names = sorted(tar.getnames())
        if names != sorted(release["files"]):
            expected = sorted(release["files"])
            raise ReleaseError(f"{archive} holds {names}, release.json names {expected}")
        tar.extractall(out_dir, filter="data")  # "data": no absolute paths, links or devices
    for name, expected in release["files"].items():
        if _entry(out_dir / name) != expected:
            raise ReleaseError(f"{name} in {archive} does not match its checksum in release.json")
    return release


def _widen(half_weights: Path, weights: Path) -> None:
    state = torch.load(half_weights, map_location="cpu", weights_only=True)
    torch.save({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, weights)


def unpack_model(release_dir: Path, out_dir: Path) -> dict:
    """The release's model alone (float32 weights, tokenizer, config; no index), e.g. to
    fine-tune it on another corpus; returns release.json."""
    release = unpack(release_dir, out_dir)
    _widen(out_dir / HALF_WEIGHTS_FILE, out_dir / WEIGHTS_FILE)
    (out_dir / HALF_WEIGHTS_FILE).unlink()
    return release


def materialise(
    release_dir: Path, out_dir: Path, log: Callable[[str], None] = print, progress: bool = True
) -> dict:
    """A complete version folder (float32 weights, Faiss shards) from the release; returns
    release.json."""
    out_dir = Path(out_dir)
    clock = time.monotonic()
    release = unpack_model(release_dir, out_dir)
    log(f"release {release['version']}: checked and unpacked in {time.monotonic() - clock:.1f}s")
    clock = time.monotonic()
    index_passages(out_dir, progress=progress)
    log(f"release {release['version']}: passages encoded and indexed in "
        f"{time.monotonic() - clock:.1f}s")  # fmt: skip
    return release


def index_passages(version_dir: Path, progress: bool = False) -> None:
    """Encode the shipped collection with the version's passage tower and write its shards,
    with the index settings the version was trained with."""
    model, tokenizer = load_model(version_dir)
    config = json.loads((Path(version_dir) / CONFIG_FILE).read_text())
    index_cfg = IndexConfig.from_dict(config.get("training", {}).get("index", {}))
    collection = datasets.load_collection()
    with torch.inference_mode():
        vectors = encode_texts(
            model.embedding, model.passage_tower, tokenizer, collection.texts,
            model.config.max_passage_len, progress=progress,
        )  # fmt: skip
    build_shards(vectors, collection.ids, collection.texts, version_dir, index_cfg)


def import_release(
    store: ArtifactStore,
    release_dir: Path = RELEASE_DIR,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> str:
    """Store the release as a version (once: an already stored release is left as it is);
    returns its version id. Does not make it live."""
    release = read_release(release_dir)
    version = release["version"]
    try:
        store.manifest(version)
        log(f"release {version}: already in the artifact store")
        return version
    except VersionNotFound:
        pass
    with tempfile.TemporaryDirectory(prefix="twotower-release-") as folder:
        out = Path(folder) / version
        materialise(release_dir, out, log, progress)
        clock = time.monotonic()
        extra = {
            "profile": release["reproduce"]["profile"],
            "release": _summary(release),
            "corpus": datasets.shipped_corpus(),
        }
        store.upload_version(out, version=version, extra=extra)
        log(f"release {version}: stored in {time.monotonic() - clock:.1f}s")
    return version


def _summary(release: dict) -> dict:
    return {k: release[k] for k in ("name", "created_at", "reproduce", "weights_dtype")}


# --------------------------------------------------------------------------- making a release
def export_release(
    version_dir: Path,
    release_dir: Path,
    reproduce: dict,
    name: str,
    log: Callable[[str], None] = print,
) -> dict:
    """Pack a stored version's folder as the release: float16 weights, then the metrics of
    exactly what an import will serve (rebuilt and re-evaluated here). Replaces the files in
    ``release_dir`` only once the new ones are complete."""
    version_dir = Path(version_dir)
    release_dir = Path(release_dir)
    release_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="twotower-export-", dir=release_dir) as folder:
        staging = Path(folder) / "files"
        staging.mkdir()
        for name_ in (CONFIG_FILE, TOKENIZER_FILE):
            shutil.copy2(version_dir / name_, staging / name_)
        state = torch.load(version_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        torch.save(half, staging / HALF_WEIGHTS_FILE)

        check = Path(folder) / "check"  # the version as an import will build it
        check.mkdir()
        for name_ in (CONFIG_FILE, TOKENIZER_FILE):
            shutil.copy2(staging / name_, check / name_)
        _widen(staging / HALF_WEIGHTS_FILE, check / WEIGHTS_FILE)
        index_passages(check, progress=True)
        metrics = _evaluate(check)
        trained = json.loads((version_dir / METRICS_FILE).read_text())
        metrics["trained_float32"] = {s: trained[s] for s in EVAL_SPLITS if s in trained}
        (staging / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
        log(f"float16 release metrics: {json.dumps({s: metrics[s] for s in EVAL_SPLITS})}")

        archive = Path(folder) / ARCHIVE_FILE
        with tarfile.open(archive, "w:xz", preset=9) as tar:
            for name_ in SHIPPED:
                tar.add(staging / name_, arcname=name_, filter=_plain)
        release = {
            "name": name,
            "version": version_dir.name,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "reproduce": reproduce,
            "weights_dtype": "float16",
            "metrics": {s: metrics[s] for s in EVAL_SPLITS},
            "archive": _entry(archive),
            "files": {n: _entry(staging / n) for n in SHIPPED},
        }
        os.replace(archive, release_dir / ARCHIVE_FILE)
        tmp = release_dir / f".{RELEASE_FILE}.tmp"
        tmp.write_text(json.dumps(release, indent=2) + "\n")
        os.replace(tmp, release_dir / RELEASE_FILE)
    return release


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Archive entries without owner or time, so the same files give the same archive."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def _evaluate(version_dir: Path) -> dict:
    metrics = {}
    for split in EVAL_SPLITS:
        queries, qrels = datasets.load_queries(split), datasets.load_qrels(split)
        metrics[split] = evaluate_run(dense_run(version_dir, queries), qrels)
    return metrics


def describe(release: dict) -> str:
    """One paragraph for `twotower release show`."""
    out = io.StringIO()
    out.write(f"{release['name']}: version {release['version']} ({release['weights_dtype']})\n")
    out.write(f"reproduce: {release['reproduce']['command']}\n")
    out.write(f"code: {release['reproduce']['commit']}\n")
    for split, row in release["metrics"].items():
        out.write(f"{split}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()) + "\n")
    return out.getvalue()
