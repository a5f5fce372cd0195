"""Each loss behaves on hand-made inputs, and the combined objective falls on a tiny batch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.examples import Example, ExampleSet, collate
from training.losses import (
    EmbeddingDistillationLoss,
    NextTokenLoss,
    SimilarityDistillationLoss,
    TripletMarginLoss,
)
from training.model import ModelConfig, TwoTower
from training.objective import TrainingObjective
from training.text import Tokenizer
from training.train import (
    TrainConfig,
    build_objective,
    fit_local,
    make_optimizer,
    seed_everything,
)


def unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def triplet(*tensors, margin=0.2, in_batch=True, explicit_weight=0.0, **inputs):
    return TripletMarginLoss(margin, in_batch, explicit_weight).compute(*tensors, **inputs)


def similarity_distillation(*tensors):
    return SimilarityDistillationLoss().compute(*tensors)


def embedding_distillation(*tensors):
    return EmbeddingDistillationLoss().compute(*tensors)


def test_triplet_loss_is_zero_when_every_positive_wins_by_the_margin():
    q = unit([1, 0], [0, 1])
    assert triplet(q, q.clone(), unit([-1, 0], [0, -1]), margin=0.5).item() == 0.0


def test_triplet_loss_counts_in_batch_negatives_but_not_shared_positives():
    q = unit([1, 0], [1, 0])
    p = unit([1, 0], [1, 0])  # both rows hold the same positive passage
    hinge = triplet(q, p, None, margin=0.2)
    assert hinge.item() == pytest.approx(0.2)  # the other row's (identical) positive hurts
    same = torch.tensor([[True, True], [True, True]])
    with pytest.raises(ValueError, match="no negatives"):
        triplet(q, p, None, in_batch=False)
    # Masked as the same passage, the only candidate is gone: nothing to push away.
    assert triplet(q, p, None, margin=0.2, same_passage=same).item() == 0.0


def test_explicit_negative_weight_adds_each_rows_own_negative_hinge():
    q = unit([1, 0], [0, 1])
    p = q.clone()
    n = unit([1, 0.2], [1, 0])  # row 0's own negative is nearly its positive; row 1's is far
    plain = triplet(q, p, n, margin=0.2)
    weighted = triplet(q, p, n, margin=0.2, explicit_weight=2.0)
    own_hinge = torch.relu(0.2 - 1.0 + (q[0] * n[0]).sum())  # row 1's own hinge is 0
    assert own_hinge > 0
    assert (weighted - plain).item() == pytest.approx(2.0 * own_hinge.item() / 2, rel=1e-5)
    # Without in-batch candidates the explicit negative is the whole loss already.
    assert triplet(q, p, n, in_batch=False, explicit_weight=2.0).item() == pytest.approx(
        triplet(q, p, n, in_batch=False).item()
    )


def test_distillation_loss_is_zero_when_student_ranks_like_the_teacher():
    q, p = unit([1, 0], [0, 1]), unit([1, 0.1], [0.1, 1])
    assert similarity_distillation(q, p, q, p).item() == pytest.approx(0.0, abs=1e-6)
    assert similarity_distillation(q, p.flip(0), q, p).item() > 1.0


def test_embedding_distillation_pulls_each_vector_to_its_teacher_and_skips_missing_ones():
    student, teacher = unit([1, 0], [0, 1]), unit([1, 0], [1, 0])
    assert embedding_distillation(student, teacher).item() == pytest.approx(0.5)  # (0 + 1) / 2
    teacher[1] = float("nan")  # no cached vector for the second text: left out
    assert embedding_distillation(student, teacher).item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match="dim"):
        embedding_distillation(student, unit([1, 0, 0], [0, 1, 0]))


TINY_TRIPLES = [
    ("capital of france", "paris is the capital of france", "bananas are yellow fruit"),
    ("boiling point of water", "water boils at 100 degrees", "the eiffel tower is tall"),
    ("largest planet", "jupiter is the largest planet", "water is wet and clear"),
    ("yellow fruit", "bananas are a yellow fruit", "jupiter has many moons"),
]


def tiny_model(**model_options) -> tuple[Tokenizer, TwoTower]:
    tok = Tokenizer.build([t for triple in TINY_TRIPLES for t in triple], min_count=1)
    cfg = ModelConfig(vocab_size=len(tok), embed_dim=16, hidden_dim=16, dim=8, **model_options)
    return tok, TwoTower(cfg)


def test_the_objective_falls_on_a_tiny_batch():
    seed_everything(0)
    tok, model = tiny_model(dropout=0.0)
    teacher = np.random.default_rng(0).normal(size=(4, 3, 6))
    examples = ExampleSet.build([Example(*t) for t in TINY_TRIPLES], tok, model.config, teacher)
    train_cfg = TrainConfig(batch_size=4, lr=1e-2, embedding_lr=1e-2, warmup_steps=1)
    objective = build_objective(model, train_cfg)
    optimizer = make_optimizer(model, train_cfg)
    batch = collate(examples, np.arange(4))
    first = {k: v.item() for k, v in objective(batch).items()}
    assert set(first) == {"triplet", "next_token", "distill", "total"}
    for _ in range(40):
        optimizer.zero_grad()
        objective(batch)["total"].backward()
        optimizer.step()
    last = {k: v.item() for k, v in objective(batch).items()}
    assert last["total"] < 0.5 * first["total"]
    assert last["triplet"] < first["triplet"] and last["next_token"] < first["next_token"]


def test_only_the_losses_with_a_weight_are_built_each_holding_its_settings():
    _, model = tiny_model()
    default = build_objective(model, TrainConfig())
    assert [type(loss) for loss in default.losses] == [
        TripletMarginLoss,
        NextTokenLoss,
        SimilarityDistillationLoss,
    ]  # embed_distill_weight is 0 by default
    cfg = TrainConfig(
        margin=0.3,
        explicit_negative_weight=2.0,
        next_token_weight=0,
        distill_weight=0,
        embed_distill_weight=0.5,
    )
    objective = build_objective(model, cfg)
    assert [type(loss) for loss in objective.losses] == [
        TripletMarginLoss,
        EmbeddingDistillationLoss,
    ]
    assert objective.weights == [1.0, 0.5]
    assert (objective.losses[0].margin, objective.losses[0].explicit_weight) == (0.3, 2.0)
    # Under DDP each worker samples its share of the next-token positions.
    ddp = build_objective(model, TrainConfig(next_token_positions=100), rank=1, world=4)
    assert ddp.losses[1].max_positions == 25
    with pytest.raises(ValueError, match="at least one loss"):
        TrainingObjective(model, [])


def test_the_total_is_the_weighted_sum_of_the_configured_parts():
    seed_everything(0)
    tok, model = tiny_model()
    teacher = F.normalize(torch.randn(4, 3, model.config.dim), dim=-1).numpy()
    examples = ExampleSet.build([Example(*t) for t in TINY_TRIPLES], tok, model.config, teacher)
    cfg = TrainConfig(
        batch_size=4, next_token_weight=0.3, distill_weight=0.7, embed_distill_weight=0.2
    )
    parts = build_objective(model, cfg)(collate(examples, np.arange(4)))
    assert list(parts) == ["triplet", "next_token", "distill", "embed_distill", "total"]
    expected = (
        parts["triplet"]
        + 0.3 * parts["next_token"]
        + 0.7 * parts["distill"]
        + 0.2 * parts["embed_distill"]
    )
    assert parts["total"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_loss_with_nothing_to_learn_from_a_batch_is_left_out_of_it():
    seed_everything(0)
    tok, model = tiny_model(encoder="meanpool")  # no RNN states: no next-token loss
    examples = ExampleSet.build([Example(*t) for t in TINY_TRIPLES], tok, model.config)
    batch = collate(examples, np.arange(4))  # no teacher vectors: no distillation
    parts = build_objective(model, TrainConfig(embed_distill_weight=1.0))(batch)
    assert list(parts) == ["triplet", "total"]
    assert parts["total"].item() == parts["triplet"].item()
    with pytest.raises(ValueError, match="no configured loss applies"):
        TrainingObjective(model, [(SimilarityDistillationLoss(), 1.0)])(batch)


def test_bad_training_config_gets_a_clear_error():
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match="unknown training config keys"):
        TrainConfig.from_dict({"epoch": 3})


def test_query_tower_only_training_leaves_every_passage_vector_as_it_was():
    """The learning loop's fine-tunes move the query tower alone, so the index stays valid."""
    seed_everything(0)
    tok, model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    examples = ExampleSet.build([Example(*t) for t in TINY_TRIPLES], tok, model.config)
    cfg = TrainConfig(epochs=5, batch_size=4, lr=1e-2, warmup_steps=1, query_tower_only=True)
    fit_local(model, examples, cfg, log=lambda line: None)
    after = model.state_dict()
    frozen = [k for k in after if k.startswith(("embedding.", "passage_tower."))]
    queries = [k for k in after if k.startswith("query_tower.")]
    moved = [k for k in queries if not torch.equal(after[k], before[k])]
    assert frozen and all(torch.equal(after[k], before[k]) for k in frozen)
    assert moved  # the query tower did learn


def test_passage_lr_scale_moves_what_shapes_passage_vectors_more_gently():
    _, model = tiny_model()
    cfg = TrainConfig(lr=1e-2, embedding_lr=4e-3, passage_lr_scale=0.25)
    optimizer = make_optimizer(model, cfg)
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    named = dict(model.named_parameters())
    assert len(lr_of) == len(named)  # every trainable parameter is in exactly one group
    for name, param in named.items():
        expected = {"embedding": 1e-3, "passage_tower": 2.5e-3}.get(name.split(".")[0], 1e-2)
        assert lr_of[id(param)] == pytest.approx(expected), name
    with pytest.raises(ValueError, match="passage_lr_scale must be > 0"):
        TrainConfig(passage_lr_scale=0)
