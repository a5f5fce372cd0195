"""Training a TwoTower: the configuration, the objective it builds, the optimizer and its
schedule, and one epoch loop (:func:`train_model`) shared by in-process training (tests, tiny
versions: :func:`fit_local`) and the Ray Train workers (real versions: :func:`fit_ray`).
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from cluster.artifacts import ArtifactStore
from training.examples import ExampleSet, collate, epoch_batches
from training.losses import (
    EmbeddingDistillationLoss,
    NextTokenLoss,
    SimilarityDistillationLoss,
    TripletMarginLoss,
)
from training.model import TwoTower
from training.objective import TrainingObjective


@dataclass
class TrainConfig:
    epochs: int = 3
    batch_size: int = 64
    lr: float = 2e-3
    embedding_lr: float = 5e-4  # the word2vec init is good; move it more gently
    weight_decay: float = 0.0
    margin: float = 0.2
    in_batch: bool = True
    # Extra weight of each example's own (mined, given or skip-above) negative over the
    # in-batch mean, where it is one of ~2 x batch_size candidates (losses/triplet.py).
    explicit_negative_weight: float = 0.0
    next_token_weight: float = 0.1  # λ
    next_token_positions: int = 2048  # positions sampled per batch and tower
    distill_weight: float = 1.0  # α; used only for examples that carry teacher vectors
    # A lower temperature makes the teacher's softmax almost one-hot, so it passes on little of
    # its ordering of the other candidates (docs/results/quality.md, "Distillation temperature").
    distill_temperature: float = 0.1
    embed_distill_weight: float = 0.0  # β; needs the model's dim to equal the teacher's
    grad_clip: float = 1.0
    warmup_steps: int = 50
    seed: int = 13
    # Train the query tower alone (embedding and passage tower frozen): passage vectors, and so
    # the index, stay exactly as they were. The learning loop's fine-tunes use it.
    query_tower_only: bool = False
    # Learning-rate multiplier for what shapes passage vectors (the embedding and the passage
    # tower) when they train: a fine-tune can move them more gently than the query tower.
    passage_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        for name in ("epochs", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                problems.append(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.batch_size < 2 and self.in_batch:
            problems.append("in-batch negatives need batch_size >= 2")
        for name in ("lr", "embedding_lr", "distill_temperature", "passage_lr_scale"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        for name in (
            "margin",
            "explicit_negative_weight",
            "next_token_weight",
            "distill_weight",
            "embed_distill_weight",
            "weight_decay",
        ):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; known: {sorted(known)}")
        return cls(**data)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_objective(
    model: TwoTower, cfg: TrainConfig, rank: int = 0, world: int = 1
) -> TrainingObjective:
    """The losses ``cfg`` asks for, each with its hyperparameters and weight:

    loss = triplet margin (in-batch + explicit negatives)
         + λ · next-token cross-entropy (query and passage RNNs)
         + α · similarity distillation from the cached teacher vectors
         + β · embedding distillation: each tower's vector towards the teacher's (same dim)

    A loss whose weight is 0 is not built. Under DDP each worker samples its share of the
    next-token positions, so the global batch samples as many as one process does.
    """
    configured = [
        (1.0, partial(TripletMarginLoss, cfg.margin, cfg.in_batch, cfg.explicit_negative_weight)),
        (cfg.next_token_weight, partial(NextTokenLoss, max(1, cfg.next_token_positions // world))),
        (
            cfg.distill_weight,
            partial(SimilarityDistillationLoss, cfg.distill_temperature, cfg.distill_temperature),
        ),
        (cfg.embed_distill_weight, EmbeddingDistillationLoss),
    ]
    losses = [(make(), weight) for weight, make in configured if weight > 0]
    return TrainingObjective(model, losses, rank, world)


def freeze_for(model: TwoTower, cfg: TrainConfig) -> None:
    """Switch off the gradients ``cfg`` keeps fixed (before DDP wraps the model)."""
    if cfg.query_tower_only:
        model.embedding.requires_grad_(False)
        model.passage_tower.requires_grad_(False)


def make_optimizer(model: TwoTower, cfg: TrainConfig) -> torch.optim.Optimizer:
    def trainable(prefix: str, exclude: tuple[str, ...] = ()) -> list:
        return [
            p
            for n, p in model.named_parameters()
            if n.startswith(prefix) and not n.startswith(exclude) and p.requires_grad
        ]

    groups = [
        {"params": trainable("", ("embedding.", "passage_tower.")), "lr": cfg.lr},
        {"params": trainable("passage_tower."), "lr": cfg.lr * cfg.passage_lr_scale},
        {"params": trainable("embedding."), "lr": cfg.embedding_lr * cfg.passage_lr_scale},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=cfg.weight_decay)


def make_scheduler(optimizer, cfg: TrainConfig, total_steps: int):
    """Linear warm-up, then cosine decay to 10 % of the learning rate."""

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_epoch(
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    examples: ExampleSet,
    cfg: TrainConfig,
    epoch: int,
    progress: bool = False,
) -> dict[str, float]:
    """One pass over the examples (under DDP, this worker's rows of every global batch);
    returns the mean of each loss part."""
    objective.train()
    batches = epoch_batches(len(examples), cfg.batch_size, epoch, cfg.seed)
    if progress:
        # Redrawn every 2 s, not per batch: on Ray each redraw is a log line the driver relays,
        # and relaying one per batch costs the driver CPU that training needs.
        batches = tqdm(
            batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", mininterval=2.0
        )
    sums: dict[str, float] = {}
    params = [p for p in objective.parameters() if p.requires_grad]
    for rows in batches:
        parts = objective(collate(examples, rows))
        optimizer.zero_grad(set_to_none=True)
        parts["total"].backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        for name, value in parts.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach())
        if progress:
            batches.set_postfix(loss=f"{float(parts['total'].detach()):.4f}", refresh=False)
    return {name: total / len(batches) for name, total in sums.items()}


def _global_means(losses: dict[str, float], world: int) -> dict[str, float]:
    """Each DDP worker measured its own rows: the global batch's means are their average."""
    names = sorted(losses)
    values = torch.tensor([losses[k] for k in names], dtype=torch.float64)
    torch.distributed.all_reduce(values)
    return dict(zip(names, (values / world).tolist(), strict=True))


def _format(record: dict) -> str:
    return " ".join(
        f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()
    )


def train_model(
    model: TwoTower,
    examples: ExampleSet,
    cfg: TrainConfig,
    *,
    rank: int = 0,
    world: int = 1,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    validate: Callable[[TwoTower], dict[str, float]] | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
    after_epoch: Callable[[list[dict]], None] | None = None,
) -> list[dict[str, float]]:
    """Set up and run every epoch, in one process or as DDP worker ``rank`` of ``world``.

    ``wrap`` wraps the objective for DDP; ``after_epoch`` receives the history so far after each
    epoch (the Ray workers checkpoint and report there). Returns one record per epoch.
    """
    seed_everything(cfg.seed + rank)  # identical weights everywhere, distinct dropout masks
    freeze_for(model, cfg)
    objective = build_objective(model, cfg, rank, world)
    if wrap is not None:
        objective = wrap(objective)
    optimizer = make_optimizer(model, cfg)
    steps = cfg.epochs * len(epoch_batches(len(examples), cfg.batch_size, 0, cfg.seed))
    scheduler = make_scheduler(optimizer, cfg, steps)
    history = []
    for epoch in range(cfg.epochs):
        started = time.time()
        losses = train_epoch(objective, optimizer, scheduler, examples, cfg, epoch, progress)
        record = {"epoch": epoch + 1, **(_global_means(losses, world) if world > 1 else losses)}
        if validate is not None:
            model.eval()
            record.update({f"val_{k}": v for k, v in validate(model).items()})
        record["seconds"] = round(time.time() - started, 2)
        log(_format(record))
        history.append(record)
        if after_epoch is not None:
            after_epoch(history)
    model.eval()
    return history


def fit_local(
    model: TwoTower,
    examples: ExampleSet,
    cfg: TrainConfig,
    validate: Callable[[TwoTower], dict[str, float]] | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> list[dict[str, float]]:
    """Train in this process (tiny versions, tests). Returns one record per epoch."""
    return train_model(model, examples, cfg, validate=validate, progress=progress, log=log)


# --------------------------------------------------------------------------- Ray Train
def _ray_worker(config: dict) -> None:
    """train_loop_per_worker: DDP over Ray Train workers, each on its rows of every batch."""
    # Ray only on the Ray path: in-process training and its tests never start or import it.
    import ray
    import ray.train
    import ray.train.torch

    torch.set_num_threads(config["threads"])
    cfg: TrainConfig = config["train_cfg"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    examples: ExampleSet = ray.get(config["examples"])
    model = TwoTower(config["model_cfg"])
    model.load_state_dict(ray.get(config["initial_state"]))
    validator = config["validator"]

    def prepare(objective: nn.Module) -> nn.Module:
        return ray.train.torch.prepare_model(
            objective, parallel_strategy_kwargs={"find_unused_parameters": True}
        )

    def report(history: list[dict]) -> None:
        """Rank 0 checkpoints the weights and the history so far; every worker reports."""
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = None
            if rank == 0:
                torch.save(model.state_dict(), Path(folder) / "weights.pt")
                (Path(folder) / "history.json").write_text(json.dumps(history))
                checkpoint = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(history[-1], checkpoint=checkpoint)

    train_model(
        model,
        examples,
        cfg,
        rank=rank,
        world=world,
        wrap=prepare,
        validate=ray.get(validator) if validator is not None and rank == 0 else None,
        progress=rank == 0,
        log=(lambda line: print(f"epoch {line}", flush=True)) if rank == 0 else lambda line: None,
        after_epoch=report,
    )


def s3_filesystem(settings):
    """pyarrow S3 filesystem on the artifact store's endpoint, for Ray Train's storage."""
    # Only Ray Train's storage needs pyarrow's filesystem layer.
    import pyarrow.fs

    return pyarrow.fs.S3FileSystem(
        access_key=settings.s3_access_key.get_secret_value(),
        secret_key=settings.s3_secret_key.get_secret_value(),
        endpoint_override=settings.s3_address,
        scheme="https" if settings.s3_secure else "http",
        region=settings.s3_region,
    )


def fit_ray(
    settings,
    model: TwoTower,
    examples: ExampleSet,
    cfg: TrainConfig,
    validator: Callable[[TwoTower], dict[str, float]] | None = None,
    run_name: str | None = None,
    threads_per_worker: int = 1,
) -> list[dict]:
    """Train with Ray Train's TorchTrainer (DDP, ``settings.train_workers`` CPU workers).

    Checkpoints go to ``s3://<bucket>/ray-train/<run_name>`` in the artifact store; the final
    weights are loaded back into ``model``. Returns one metrics record per epoch.
    """
    # Ray only on the Ray path: in-process training and its tests never import it.
    import ray

    if not ray.is_initialized():
        raise RuntimeError("fit_ray needs a connected Ray (cluster.ray_connection.connect)")
    workers = settings.train_workers
    if min(cfg.batch_size, len(examples)) < workers:
        raise ValueError(
            f"{workers} Ray Train workers split each batch of {cfg.batch_size} "
            f"({len(examples)} examples): every worker needs at least one row"
        )
    ArtifactStore.from_settings(settings)  # makes sure the bucket exists
    run_name = run_name or f"train-{time.strftime('%Y%m%d-%H%M%S')}"
    loop_config = {
        "examples": ray.put(examples),
        "initial_state": ray.put(model.state_dict()),
        "model_cfg": model.config,
        "train_cfg": cfg,
        "validator": ray.put(validator) if validator is not None else None,
        "threads": threads_per_worker,
    }
    result = _torch_trainer(settings, loop_config, run_name).fit()
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {run_name} finished without a checkpoint")
    with tempfile.TemporaryDirectory() as folder:
        local = Path(result.checkpoint.to_directory(folder))
        state = torch.load(local / "weights.pt", map_location="cpu", weights_only=True)
        history = json.loads((local / "history.json").read_text())
    model.load_state_dict(state)
    model.eval()
    return history


def _torch_trainer(settings, loop_config: dict, run_name: str):
    """Ray Train's TorchTrainer: CPU workers, checkpoints in the artifact store's bucket."""
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    return TorchTrainer(
        _ray_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=settings.train_workers,
            use_gpu=False,
            resources_per_worker={"CPU": settings.train_cpus_per_worker},
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=f"{settings.s3_bucket}/ray-train",
            storage_filesystem=s3_filesystem(settings),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
        ),
    )
