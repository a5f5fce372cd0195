"""Training losses, one per file (sentence-transformers style)."""

from training.losses.distillation import similarity_distillation_loss
from training.losses.embedding_distillation import embedding_distillation_loss
from training.losses.next_token import next_token_loss
from training.losses.triplet import triplet_margin_loss

__all__ = [
    "embedding_distillation_loss",
    "next_token_loss",
    "similarity_distillation_loss",
    "triplet_margin_loss",
]
