"""Build a model version end to end and publish it.

    word2vec → BM25 (+ hard negatives) → training examples (+ cached teacher vectors)
    → Ray Train (TorchTrainer, DDP) → Faiss shards → evaluation (dev, DL19) → ArtifactStore

``ensure_version(settings)`` is what `twotower up` calls: it reuses the live version, else
imports the release version shipped in the repository (:mod:`training.release`), or trains
``settings.profile`` when ``first_start`` says so. ``build_version`` is what `twotower train`
calls.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import ray

from cluster.artifacts import ArtifactStore
from cluster.config import Settings
from cluster.ray_connection import connect
from training import datasets, release
from training.bm25 import BM25Index
from training.evaluation.compare import ABLATION_DIR
from training.evaluation.holdout import HoldoutValidator
from training.examples import ExampleSet
from training.index import IndexConfig
from training.model import ModelConfig, TwoTower, save_model
from training.teacher import TeacherCache
from training.text import Tokenizer
from training.train import TrainConfig, fit_local, fit_ray, seed_everything
from training.trainset import DataConfig, build_training_data
from training.version import write_version
from training.word2vec import Word2VecConfig, embedding_matrix, train_word2vec


@dataclass
class Profile:
    """Everything that defines a training run besides the seed and the cluster."""

    name: str
    word2vec: Word2VecConfig
    model: dict  # ModelConfig fields except vocab_size / embed_dim (those come from the data)
    train: TrainConfig
    data: DataConfig
    index: IndexConfig = field(default_factory=IndexConfig)
    vocab_min_count: int = 2
    ablation: bool = True  # also train the mean-pooling ablation (for `twotower eval`)
    overrides: tuple[str, ...] = ()  # `twotower train --set` changes, recorded in the manifest


PROFILES: dict[str, Profile] = {
    # Minutes on two cores: tests, CI, and a quick look at a change.
    "quick": Profile(
        name="quick",
        word2vec=Word2VecConfig(dim=128, epochs=2),
        # A narrower GRU each way costs what a wider one-way GRU does, and ranks better
        # (docs/results/quality.md, "Bidirectional towers").
        model=dict(
            hidden_dim=80, bidirectional=True, dim=384, max_passage_len=64, pooling="attention"
        ),
        train=TrainConfig(epochs=1, batch_size=64, embed_distill_weight=1.0),
        data=DataConfig(ict=4000),
    ),
    # A few CPU-minutes: a smoke run of the whole pipeline on a starved machine.
    "micro": Profile(
        name="micro",
        word2vec=Word2VecConfig(dim=64, epochs=1),
        model=dict(hidden_dim=64, dim=128, max_passage_len=48, pooling="attention"),
        train=TrainConfig(epochs=1, batch_size=64),
        data=DataConfig(ict=0),
    ),
    # Seconds: the tests' version (tests/fixtures/model.py), trained on a slice of the corpus
    # without the teacher, so building it needs no services.
    "tiny": Profile(
        name="tiny",
        word2vec=Word2VecConfig(dim=48, epochs=5, window=5),
        model=dict(
            encoder="rnn", hidden_dim=32, dim=48, max_passage_len=40, next_token_cutoffs=[500]
        ),
        train=TrainConfig(
            epochs=3,
            batch_size=64,
            lr=3e-3,
            embedding_lr=3e-3,
            next_token_positions=512,
            warmup_steps=10,
        ),
        data=DataConfig(ict=1200, holdout_pairs=100, teacher=False, ict_negatives="random"),
        index=IndexConfig(num_shards=2),
        ablation=False,
    ),
    # The best settings found: what the release version is trained with (docs/training.md).
    "full": Profile(
        name="full",
        word2vec=Word2VecConfig(dim=128, epochs=5),
        model=dict(
            hidden_dim=112, bidirectional=True, dim=384, max_passage_len=96, pooling="attention"
        ),
        # Batch 128 beats batch 64 at less cost: two Ray Train workers share a larger step
        # better (docs/results/quality.md, "Batch 128, six epochs").
        train=TrainConfig(epochs=6, batch_size=128, embed_distill_weight=1.0),
        data=DataConfig(ict=44000),
    ),
}


SECTIONS = {
    "model": ModelConfig,
    "train": TrainConfig,
    "data": DataConfig,
    "word2vec": Word2VecConfig,
    "index": IndexConfig,
}
DERIVED_MODEL_KEYS = {"vocab_size", "embed_dim"}  # from the tokenizer and word2vec.dim
# Keys a run takes from the settings, so an override would be silently ignored.
FROM_SETTINGS = {"train.seed": "TWOTOWER_SEED (one seed drives word2vec, data and training)"}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown training profile {name!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[name]


def with_overrides(profile: Profile, overrides: list[str]) -> Profile:
    """``profile`` with ``section.key=value`` changes (section: model, train, data, word2vec,
    index; ``ablation=false`` skips the mean-pool ablation). Values are JSON (``3``, ``0.5``,
    ``true``, ``"gru"``) or plain strings. This is how single ingredients are ablated from the
    command line; unknown sections or keys get a clear error."""
    changes: dict[str, dict] = {}
    ablation = profile.ablation
    for item in overrides:
        key, sep, raw = item.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key == "ablation" and isinstance(value, bool):
            ablation = value
            continue
        section, dot, name = key.partition(".")
        if not (sep and dot and name) or section not in SECTIONS:
            raise ValueError(
                f"bad override {item!r}: use section.key=value with a section among "
                f"{sorted(SECTIONS)}, or ablation=true|false"
            )
        if key in FROM_SETTINGS:
            raise ValueError(f"{key} cannot be overridden: set {FROM_SETTINGS[key]}")
        changes.setdefault(section, {})[name] = value
    current = {
        "model": profile.model,
        "train": profile.train.to_dict(),
        "data": profile.data.to_dict(),
        "word2vec": asdict(profile.word2vec),
        "index": asdict(profile.index),
    }
    merged = {s: {**current[s], **changes.get(s, {})} for s in SECTIONS}
    for section, values in merged.items():  # unknown keys: a clear error, not a TypeError
        known = {f.name for f in fields(SECTIONS[section])} - DERIVED_MODEL_KEYS
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown {section} keys {unknown}; known: {sorted(known)}")
    ModelConfig.from_dict({**merged["model"], "vocab_size": 10, "embed_dim": 8})  # validates
    return replace(
        profile,
        model=merged["model"],
        train=TrainConfig.from_dict(merged["train"]),
        data=DataConfig(**merged["data"]),
        word2vec=Word2VecConfig(**merged["word2vec"]),
        index=IndexConfig(**merged["index"]),
        ablation=ablation,
        overrides=(*profile.overrides, *overrides),
    )


class Laps:
    """Times the pipeline's steps and logs each as it ends."""

    def __init__(self, name: str, log) -> None:
        self.name, self.log = name, log
        self.timings: dict[str, float] = {}
        self.started = self.clock = time.time()

    def __call__(self, step: str) -> None:
        self.timings[step] = round(time.time() - self.clock, 1)
        self.log(f"[{self.name}] {step}: {self.timings[step]}s")
        self.clock = time.time()

    def summary(self) -> dict[str, float]:
        return {**self.timings, "total": round(time.time() - self.started, 1)}


def build_version(
    settings: Settings,
    profile: Profile,
    out_dir: Path,
    eval_splits: tuple[str, ...] = ("dev", "dl19"),
    log=print,
) -> dict:
    """Train ``profile`` on Ray Train and write a complete version folder; returns its metrics."""
    seed = settings.seed
    seed_everything(seed)
    lap = Laps(profile.name, log)

    collection = datasets.load_collection()
    train_queries = datasets.training_queries()  # never an evaluation query
    tokenizer = Tokenizer.build(collection.texts + train_queries, profile.vocab_min_count)
    w2v = train_word2vec(collection.texts + train_queries, profile.word2vec, seed)
    lap("word2vec")

    bm25 = BM25Index.build(collection.ids, collection.texts, progress=True)
    teacher = TeacherCache.load() if profile.data.teacher else None
    data = build_training_data(profile.data, seed, bm25=bm25, teacher=teacher)
    model_cfg = ModelConfig(
        vocab_size=len(tokenizer), embed_dim=profile.word2vec.dim, **profile.model
    )
    examples = ExampleSet.build(data.examples, tokenizer, model_cfg, data.teacher)
    lap("examples")

    model = TwoTower(model_cfg, embedding_matrix(w2v, tokenizer, seed))
    validator = holdout_validator(data, collection, tokenizer, model_cfg)
    cfg = TrainConfig.from_dict({**profile.train.to_dict(), "seed": seed})

    def fit(net: TwoTower, run_name: str) -> list[dict]:
        return fit_model(settings, net, examples, cfg, validator, run_name, log)

    history = fit(model, out_dir.name)
    lap("train")

    if profile.ablation:
        # The seed's architecture, trained on the same examples with the same losses.
        ablation_cfg = ModelConfig.from_dict({**model_cfg.to_dict(), "encoder": "meanpool"})
        ablation = TwoTower(ablation_cfg, embedding_matrix(w2v, tokenizer, seed))
        ablation_info = {"profile": profile.name, "train": cfg.to_dict()}
        ablation_info["history"] = fit(ablation, f"{out_dir.name}-meanpool")
        save_model(out_dir / ABLATION_DIR, ablation, tokenizer, ablation_info)
        lap("train_meanpool")

    eval_sets = {s: (datasets.load_queries(s), datasets.load_qrels(s)) for s in eval_splits}
    training_info = {
        **provenance(settings, profile),
        "train": cfg.to_dict(),
        "examples": data.counts,
        "teacher": teacher.meta if teacher is not None else None,
        "history": history,
    }
    return finish_version(
        out_dir, model, tokenizer, collection, profile.index, training_info, eval_sets, lap
    )


def finish_version(out_dir, model, tokenizer, collection, index_cfg, info, eval_sets, lap) -> dict:
    """Write the version folder (index, evaluation) and time it; returns its metrics."""
    metrics = write_version(out_dir, model, tokenizer, collection, index_cfg, info, eval_sets, True)
    lap("index+eval")
    metrics["timings"] = lap.summary()
    lap.log(f"[{lap.name}] done in {metrics['timings']['total']}s: {metrics}")
    return metrics


def fit_model(
    settings: Settings,
    model: TwoTower,
    examples: ExampleSet,
    cfg: TrainConfig,
    validator: HoldoutValidator | None,
    run_name: str,
    log=print,
) -> list[dict]:
    """Train in this process or on Ray Train, as ``settings.train_executor`` says."""
    if settings.train_executor == "local":
        return fit_local(model, examples, cfg, validator, progress=True, log=log)
    return fit_ray(settings, model, examples, cfg, validator, run_name=run_name)


def holdout_validator(data, collection, tokenizer, model_cfg: ModelConfig) -> HoldoutValidator:
    """The per-epoch validator over ``data.holdout``, against a fixed pool of the corpus."""
    pool = collection.texts[:: max(1, len(collection) // 2000)]
    return HoldoutValidator(
        [p.query for p in data.holdout], [p.positive for p in data.holdout], pool,
        tokenizer, model_cfg,
    )  # fmt: skip


def provenance(settings: Settings, profile: Profile) -> dict:
    """How a version was made, for its config.json: enough to train it again."""
    return {
        "profile": profile.name,
        "overrides": list(profile.overrides),
        "seed": settings.seed,
        "data": profile.data.to_dict(),
        "word2vec": vars(profile.word2vec),
        "executor": settings.train_executor,
        "workers": settings.train_workers if settings.train_executor == "ray" else 1,
    }


def train_and_publish(
    settings: Settings,
    profile_name: str | None = None,
    overrides: list[str] | None = None,
    publish: bool = True,
) -> str:
    """Build a version of the profile (with ``overrides``), store it, make it the store's
    LATEST unless ``publish`` is False (experiments), return its id."""
    profile = with_overrides(get_profile(profile_name or settings.profile), overrides or [])
    extra = {"profile": profile.name, "corpus": datasets.shipped_corpus()}
    return store_built(settings, lambda out: build_version(settings, profile, out), extra, publish)


def store_built(
    settings: Settings, build: Callable[[Path], dict], extra: dict, publish: bool = True
) -> str:
    """``build(folder)`` a version in a temporary folder (on Ray when the settings train on
    Ray), upload it with ``extra`` in its manifest, publish it unless told not to."""
    store = ArtifactStore.from_settings(settings)
    started_ray = settings.train_executor == "ray" and connect(settings, start_local=True)
    try:
        with tempfile.TemporaryDirectory(prefix="twotower-version-") as folder:
            out = Path(folder) / store.new_version_id()
            metrics = build(out)
            (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
            manifest = store.upload_version(out, version=out.name, extra=extra)
            if publish:
                store.set_latest(manifest.version)
            return manifest.version
    finally:
        if started_ray:
            ray.shutdown()


def ensure_version(settings: Settings, log=print) -> str:
    """The live version. A store with none gets the shipped release (made live), or, with
    ``first_start=train`` or no release in the checkout, a freshly trained ``profile``."""
    store = ArtifactStore.from_settings(settings)
    live = store.latest()
    if live:
        return live
    if settings.first_start == "release" and release.has_release():
        version = release.import_release(store, log=log)
        store.set_latest(version)
        return version
    return train_and_publish(settings)
