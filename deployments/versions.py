"""Which model version serving runs, and a local copy of it.

Serving only reads versions: the live one is the artifact store's ``LATEST`` pointer unless
``settings.pinned_version`` pins one. Each node keeps a verified copy under
``settings.cache_dir``, shared by every replica on that node.
"""

from __future__ import annotations

from pathlib import Path

from cluster.artifacts import ArtifactStore
from cluster.config import Settings
from cluster.corpora.documents import SHIPPED_CORPUS


class NoVersionError(RuntimeError):
    """The artifact store has no live version to serve yet."""


def target_version(settings: Settings, store: ArtifactStore | None = None) -> str:
    """The version serving should run: the pinned one, else the store's LATEST."""
    if settings.pinned_version:
        return settings.pinned_version
    store = store or ArtifactStore.from_settings(settings)
    version = store.latest()
    if version is None:
        raise NoVersionError(
            "the artifact store has no live version: train and publish one first "
            "(`twotower up` does it), or set TWOTOWER_PINNED_VERSION"
        )
    return version


def local_copy(settings: Settings, version: str) -> Path:
    """A verified local folder of ``version`` (downloaded once per node, then cached)."""
    return ArtifactStore.from_settings(settings).download(version)


def corpus_of(settings: Settings, version: str) -> tuple[str, int]:
    """(corpus name, documents watermark) of ``version``: the corpus whose API writes apply to
    it, and the last document-log seq its index holds. Versions made before corpora had names
    index the shipped MS MARCO subset and no logged write."""
    extra = ArtifactStore.from_settings(settings).manifest(version).extra
    corpus = extra.get("corpus") or {}
    return corpus.get("name", SHIPPED_CORPUS), int(extra.get("documents_watermark", 0))
