"""Training losses, one per file (sentence-transformers style)."""

from training.losses.distillation import similarity_distillation_loss
from training.losses.next_token import next_token_loss
from training.losses.triplet import triplet_margin_loss

__all__ = ["next_token_loss", "similarity_distillation_loss", "triplet_margin_loss"]
