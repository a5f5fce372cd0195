"""Ray Train end to end on a handful of examples: TorchTrainer with 2 DDP workers, the
checkpoint lands in the S3 artifact store, and the trained weights come back."""

import numpy as np
import torch

from training.examples import Example, ExampleSet
from training.model import ModelConfig, TwoTower
from training.text import Tokenizer
from training.train import HoldoutValidator, TrainConfig, fit_ray

WORDS = "red green blue fox dog cat sea sky sun moon tree rock river hill road town".split()


def toy_examples(n: int, seed: int = 0) -> list[Example]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        topic = rng.choice(WORDS, 2, replace=False)
        other = rng.choice(WORDS, 6)
        out.append(
            Example(" ".join(topic), " ".join([*topic, *rng.choice(WORDS, 4)]), " ".join(other))
        )
    return out


def test_fit_ray_trains_with_ddp_and_checkpoints_to_s3(ray_local):
    from cluster.artifacts import ArtifactStore

    settings = ray_local
    torch.manual_seed(0)
    examples = toy_examples(256)
    tok = Tokenizer.build([e.positive for e in examples] + [e.negative for e in examples], 1)
    cfg = ModelConfig(vocab_size=len(tok), embed_dim=16, hidden_dim=16, dim=8)
    model = TwoTower(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    held = toy_examples(20, seed=1)
    validator = HoldoutValidator(
        [e.query for e in held], [e.positive for e in held], [e.negative for e in held], tok, cfg
    )
    untrained = validator(model)["mrr10"]
    history = fit_ray(
        settings,
        model,
        ExampleSet.build(examples, tok, cfg),
        TrainConfig(epochs=2, batch_size=32, lr=1e-2, warmup_steps=1),
        validator,
        run_name="test-fit-ray",
    )
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[-1]["triplet"] < history[0]["triplet"]
    assert history[-1]["val_mrr10"] > untrained
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    store = ArtifactStore.from_settings(settings)
    keys = [
        o.object_name
        for o in store.client.list_objects(
            settings.s3_bucket, prefix="ray-train/test-fit-ray/", recursive=True
        )
    ]
    assert any(k.endswith("weights.pt") for k in keys), keys
