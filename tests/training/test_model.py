"""Model invariants: padding never changes a vector, the forward stack never sees the future,
serving loads only the query side, and bad configuration fails clearly."""

import numpy as np
import pytest
import torch

from training.model import ModelConfig, QueryEncoder, TwoTower, pad_batch, save_model
from training.text import Tokenizer

TEXTS = ["red fox jumps over the lazy dog", "blue whale swims in the deep sea", "fox and dog"]


def tokenizer() -> Tokenizer:
    return Tokenizer.build(TEXTS, min_count=1)


def small_config(**overrides) -> ModelConfig:
    values = dict(vocab_size=len(tokenizer()), embed_dim=8, hidden_dim=6, dim=5, num_layers=2)
    return ModelConfig(**{**values, **overrides})


VARIANTS = [
    dict(rnn=rnn, bidirectional=bi, pooling=pooling)
    for rnn in ("gru", "lstm")
    for bi in (False, True)
    for pooling in ("attention", "mean", "max")
] + [dict(encoder="meanpool")]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_padding_never_changes_a_vector(variant):
    torch.manual_seed(0)
    model = TwoTower(small_config(**variant)).eval()
    short = [2, 5, 6, 7, 3]
    alone_ids, alone_len = pad_batch([short])
    # The same sequence beside a longer one gets PAD appended; extra explicit PADs too.
    batch_ids, batch_len = pad_batch([short, [2, 4, 5, 6, 7, 8, 9, 10, 11, 3]])
    padded_more = torch.cat([batch_ids, torch.zeros(2, 7, dtype=torch.long)], dim=1)
    for side in ("query", "passage"):
        alone = model.encode(side, alone_ids, alone_len)[0][0]
        in_batch = model.encode(side, batch_ids, batch_len)[0][0]
        extra_pad = model.encode(side, padded_more, batch_len)[0][0]
        torch.testing.assert_close(in_batch, alone, atol=1e-6, rtol=0)
        torch.testing.assert_close(extra_pad, alone, atol=1e-6, rtol=0)
        assert torch.linalg.norm(alone).item() == pytest.approx(1.0, abs=1e-5)


def test_masking_ignores_what_lies_beyond_the_length():
    """Garbage (not PAD) after a sequence's length must not leak into its vector either."""
    torch.manual_seed(0)
    model = TwoTower(small_config(bidirectional=True)).eval()
    ids, lengths = pad_batch([[2, 5, 6, 3]])
    garbage = torch.cat([ids, torch.tensor([[7, 8, 9]])], dim=1)
    torch.testing.assert_close(
        model.encode("query", garbage, lengths)[0], model.encode("query", ids, lengths)[0]
    )


def test_next_token_states_never_see_later_tokens():
    """With a bidirectional tower, the states that feed the next-token head are causal."""
    torch.manual_seed(0)
    model = TwoTower(small_config(bidirectional=True, num_layers=2)).eval()
    a, a_len = pad_batch([[2, 5, 6, 7, 3]])
    b, b_len = pad_batch([[2, 5, 6, 11, 10]])  # same first three tokens, different future
    states_a = model.encode("passage", a, a_len)[1]
    states_b = model.encode("passage", b, b_len)[1]
    torch.testing.assert_close(states_a[:, :3], states_b[:, :3])
    assert not torch.allclose(states_a[:, 3:], states_b[:, 3:])


def test_query_encoder_loads_only_the_query_side(tmp_path):
    torch.manual_seed(0)
    tok = tokenizer()
    model = TwoTower(small_config()).eval()
    save_model(tmp_path, model, tok)
    encoder = QueryEncoder.load(tmp_path)
    names = {n for n, _ in encoder.tower.named_parameters()}
    assert names and not any("next_token" in n for n in names)
    vectors = encoder.encode(["red fox", "the deep sea whale", ""])
    assert vectors.dtype == np.float32 and vectors.shape == (3, 5)
    ids, lengths = pad_batch([tok.encode("red fox")])
    expected = model.encode("query", ids, lengths)[0].detach().numpy()
    np.testing.assert_allclose(vectors[:1], expected, atol=1e-6)
    assert encoder.encode([]).shape == (0, 5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(rnn="transformer"), "rnn must be one of"),
        (dict(pooling="cls"), "pooling must be one of"),
        (dict(encoder="cnn"), "encoder must be one of"),
        (dict(hidden_dim=0), "hidden_dim must be a positive integer"),
        (dict(dropout=1.5), "dropout must be in"),
        (dict(max_query_len=1), "max_query_len must be >= 2"),
    ],
)
def test_bad_model_config_gets_a_clear_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        small_config(**overrides)


def test_unknown_config_keys_and_wrong_word_vectors_are_rejected():
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"vocab_size": 10, "hiden_dim": 3})
    with pytest.raises(ValueError, match="word vectors have shape"):
        TwoTower(small_config(), word_vectors=np.zeros((3, 8), dtype=np.float32))
