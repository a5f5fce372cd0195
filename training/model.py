"""The two-tower model: a shared word embedding, a query tower and a passage tower.

Each tower reads token ids in order with an RNN (GRU by default; LSTM, layers and
bidirectionality are settings), pools the states (attention, mean or max) and projects the
result to an L2-normalised vector, so the inner product of two vectors is their cosine.
Each RNN also feeds a next-token head (adaptive softmax over the frequency-ordered
vocabulary), trained with cross-entropy as an auxiliary task.

Padding never changes a vector. Padding always trails the tokens, and an RNN's state at step t
depends only on steps 0..t, so the states of real tokens cannot see it; pooling then masks the
padded positions out. A bidirectional tower runs a second, separate RNN stack (ELMo style) on
each sequence reversed *within its length*, so padding trails there too; the forward stack
never sees a later token, so only it feeds the next-token head. (This avoids packed sequences,
which are about twice as slow on CPU.)

The ``meanpool`` encoder is the seed's original architecture, kept as an ablation: the mean
of the word vectors, then projection layers.

Serving imports only this module and ``training.text``: :class:`QueryEncoder` loads the
embedding and the query tower of a version, nothing else.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.text import PAD_ID, Tokenizer

CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE = "config.json", "tokenizer.json", "weights.pt"
ENCODERS = ("rnn", "meanpool")
RNNS = ("gru", "lstm")
POOLINGS = ("attention", "mean", "max")


@dataclass
class ModelConfig:
    vocab_size: int
    embed_dim: int = 128
    encoder: Literal["rnn", "meanpool"] = "rnn"
    rnn: Literal["gru", "lstm"] = "gru"
    hidden_dim: int = 256
    num_layers: int = 1
    bidirectional: bool = False
    pooling: Literal["attention", "mean", "max"] = "attention"
    dim: int = 256  # size of the output vector (and of the Faiss index)
    dropout: float = 0.1
    freeze_embeddings: bool = False
    next_token: bool = True  # build the next-token heads (training only; serving skips them)
    next_token_cutoffs: list[int] = field(default_factory=lambda: [2000, 10000])
    max_query_len: int = 32  # token ids, BOS/EOS included
    max_passage_len: int = 128

    def __post_init__(self) -> None:
        problems = []
        if self.encoder not in ENCODERS:
            problems.append(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.rnn not in RNNS:
            problems.append(f"rnn must be one of {RNNS}, got {self.rnn!r}")
        if self.pooling not in POOLINGS:
            problems.append(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        for name in ("vocab_size", "embed_dim", "hidden_dim", "num_layers", "dim"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                problems.append(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.vocab_size < 5:
            problems.append(
                f"vocab_size must cover the 4 special tokens and a word, got {self.vocab_size}"
            )
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("max_query_len", "max_passage_len"):
            if getattr(self, name) < 2:
                problems.append(f"{name} must be >= 2 (BOS + a word), got {getattr(self, name)}")
        if problems:
            raise ValueError("invalid model config: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; known: {sorted(known)}")
        return cls(**data)


def pad_batch(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists with PAD: (ids (B, T) int64, lengths (B,) int64)."""
    if not sequences or any(len(s) == 0 for s in sequences):
        raise ValueError("pad_batch needs a non-empty list of non-empty sequences")
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    ids = torch.full((len(sequences), int(lengths.max())), PAD_ID, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return ids, lengths


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def _reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence's valid prefix in place of itself; padding stays at the end."""
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    index = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return x.gather(1, index[:, :, None].expand_as(x))


class _Pooling(nn.Module):
    def __init__(self, kind: str, width: int):
        super().__init__()
        self.kind = kind
        if kind == "attention":
            self.score = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1))

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.kind == "mean":
            summed = (states * mask[..., None]).sum(1)
            return summed / mask.sum(1, keepdim=True).clamp(min=1)
        if self.kind == "max":
            return states.masked_fill(~mask[..., None], float("-inf")).max(1).values
        scores = self.score(states).squeeze(-1).masked_fill(~mask, float("-inf"))
        return (torch.softmax(scores, dim=1)[..., None] * states).sum(1)


def _adaptive_cutoffs(cfg: ModelConfig) -> list[int]:
    """The configured frequency cut-offs that fit the vocabulary (small vocabularies get one)."""
    cutoffs = [c for c in cfg.next_token_cutoffs if 0 < c < cfg.vocab_size - 1]
    return cutoffs or [cfg.vocab_size // 2]


class RNNTower(nn.Module):
    """RNN over embedded tokens → pooling → projection → L2 norm."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dim = cfg.dim
        rnn_class = nn.GRU if cfg.rnn == "gru" else nn.LSTM
        layer_dropout = cfg.dropout if cfg.num_layers > 1 else 0.0

        def stack() -> nn.Module:
            return rnn_class(
                cfg.embed_dim,
                cfg.hidden_dim,
                num_layers=cfg.num_layers,
                batch_first=True,
                dropout=layer_dropout,
            )

        self.forward_rnn = stack()
        self.backward_rnn = stack() if cfg.bidirectional else None
        width = cfg.hidden_dim * (2 if cfg.bidirectional else 1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.pool = _Pooling(cfg.pooling, width)
        self.project = nn.Linear(width, cfg.dim)
        self.next_token_head = (
            nn.AdaptiveLogSoftmaxWithLoss(
                cfg.hidden_dim,
                cfg.vocab_size,
                cutoffs=_adaptive_cutoffs(cfg),
                div_value=4.0,
            )
            if cfg.next_token
            else None
        )

    def forward(
        self, embedded: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (L2-normalised vectors (B, dim), forward-direction states (B, T, hidden))."""
        x = self.dropout(embedded)
        forward_states = self.forward_rnn(x)[0]
        states = forward_states
        if self.backward_rnn is not None:
            reversed_x = _reverse_within_length(x, lengths)
            backward = self.backward_rnn(reversed_x)[0]
            states = torch.cat([forward_states, _reverse_within_length(backward, lengths)], -1)
        pooled = self.pool(self.dropout(states), length_mask(lengths, x.shape[1]))
        return F.normalize(self.project(pooled), dim=-1), forward_states


class MeanPoolTower(nn.Module):
    """The seed's architecture (ablation): mean of word vectors → projection layers → L2 norm."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dim = cfg.dim
        self.project = nn.Sequential(
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.embed_dim, cfg.hidden_dim),
            nn.Tanh(),
            nn.Linear(cfg.hidden_dim, cfg.dim),
        )
        self.next_token_head = None

    def forward(self, embedded: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, None]:
        mask = length_mask(lengths, embedded.shape[1])[..., None]
        mean = (embedded * mask).sum(1) / lengths[:, None].clamp(min=1)
        return F.normalize(self.project(mean), dim=-1), None


def make_tower(cfg: ModelConfig) -> nn.Module:
    return RNNTower(cfg) if cfg.encoder == "rnn" else MeanPoolTower(cfg)


class TwoTower(nn.Module):
    def __init__(self, cfg: ModelConfig, word_vectors: np.ndarray | None = None):
        super().__init__()
        self.config = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=PAD_ID)
        if word_vectors is not None:
            if word_vectors.shape != (cfg.vocab_size, cfg.embed_dim):
                raise ValueError(
                    f"word vectors have shape {word_vectors.shape}, "
                    f"the model wants {(cfg.vocab_size, cfg.embed_dim)}"
                )
            with torch.no_grad():
                self.embedding.weight.copy_(torch.from_numpy(word_vectors))
                self.embedding.weight[PAD_ID].zero_()
        self.embedding.weight.requires_grad_(not cfg.freeze_embeddings)
        self.query_tower = make_tower(cfg)
        self.passage_tower = make_tower(cfg)

    def encode(
        self, side: Literal["query", "passage"], ids: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        tower = self.query_tower if side == "query" else self.passage_tower
        return tower(self.embedding(ids), lengths)

    def forward(self, q_ids, q_lengths, p_ids, p_lengths) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode("query", q_ids, q_lengths)[0], self.encode("passage", p_ids, p_lengths)[
            0
        ]


# --------------------------------------------------------------------------- encoding texts
@torch.inference_mode()
def encode_texts(
    embedding: nn.Module,
    tower: nn.Module,
    tokenizer: Tokenizer,
    texts: list[str],
    max_length: int,
    batch_size: int = 256,
    progress: bool = False,
) -> np.ndarray:
    """Vectors of ``texts`` (float32, L2-normalised), in input order.

    Texts are batched by length so little time goes into padding (padding would not change
    the vectors, only the cost).
    """
    if not texts:
        return np.zeros((0, tower.dim), dtype=np.float32)
    ids = [tokenizer.encode(t, max_length=max_length) for t in texts]
    order = np.argsort([len(s) for s in ids], kind="stable")
    out: np.ndarray | None = None
    starts = range(0, len(ids), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="encoding", unit="batch")
    for start in starts:
        rows = order[start : start + batch_size]
        batch_ids, lengths = pad_batch([ids[i] for i in rows])
        vectors = tower(embedding(batch_ids), lengths)[0].numpy()
        if out is None:
            out = np.empty((len(ids), vectors.shape[1]), dtype=np.float32)
        out[rows] = vectors
    return out


# --------------------------------------------------------------------------- version files
def save_model(
    directory: Path, model: TwoTower, tokenizer: Tokenizer, training: dict | None = None
) -> None:
    """Write config.json, tokenizer.json and weights.pt of a version folder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(directory / TOKENIZER_FILE)
    torch.save(model.state_dict(), directory / WEIGHTS_FILE)
    config = {"model": model.config.to_dict(), "training": training or {}}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def read_config(directory: Path) -> dict:
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{directory} is not a model version: no {CONFIG_FILE}")
    return json.loads(path.read_text())


def load_model(directory: Path) -> tuple[TwoTower, Tokenizer]:
    """The whole TwoTower of a version (for fine-tuning, indexing and evaluation)."""
    directory = Path(directory)
    cfg = ModelConfig.from_dict(read_config(directory)["model"])
    model = TwoTower(cfg)
    model.load_state_dict(
        torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    )
    model.eval()
    return model, Tokenizer.load(directory / TOKENIZER_FILE)


class QueryEncoder:
    """Serving's view of a version: tokenizer + embedding + query tower, nothing else."""

    side = "query"

    def __init__(self, tokenizer: Tokenizer, config: ModelConfig, embedding: nn.Module, tower):
        self.tokenizer = tokenizer
        self.config = config
        self.embedding = embedding.eval()
        self.tower = tower.eval()

    @property
    def dim(self) -> int:
        return self.config.dim

    @classmethod
    def load(cls, version_dir: Path) -> QueryEncoder:
        version_dir = Path(version_dir)
        cfg = ModelConfig.from_dict({**read_config(version_dir)["model"], "next_token": False})
        state = torch.load(
            version_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True, mmap=True
        )
        embedding = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=PAD_ID)
        embedding.load_state_dict({"weight": state["embedding.weight"]})
        tower = make_tower(cfg)
        prefix = f"{cls.side}_tower."
        tower.load_state_dict(
            {
                k[len(prefix) :]: v
                for k, v in state.items()
                if k.startswith(prefix) and not k.startswith(prefix + "next_token_head.")
            }
        )
        return cls(Tokenizer.load(version_dir / TOKENIZER_FILE), cfg, embedding, tower)

    def encode(self, texts: list[str]) -> np.ndarray:
        """float32 (n, dim), L2-normalised."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        side_query = self.side == "query"
        return encode_texts(
            self.embedding,
            self.tower,
            self.tokenizer,
            list(texts),
            self.config.max_query_len if side_query else self.config.max_passage_len,
            batch_size=max(len(texts), 1) if side_query else 64,
        )


class PassageEncoder(QueryEncoder):
    """The passage side alike: encodes documents written while the version serves, as its
    index encoded the others."""

    side = "passage"
