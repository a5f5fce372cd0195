"""Training losses as ``nn.Module``s, one per file (the sentence-transformers style).

Each loss holds its own hyperparameters and reads its inputs from an :class:`EncodedBatch`
(the towers run once per batch, whatever the number of losses); ``compute`` is the same
loss on plain tensors. A loss returns None for a batch it has nothing to learn from (no
teacher vectors, no RNN states). Which losses train, with what weights, is configuration:
:func:`training.train.build_objective` builds them and :class:`training.objective
.TrainingObjective` sums them.
"""

from training.losses.distillation import SimilarityDistillationLoss
from training.losses.embedding_distillation import EmbeddingDistillationLoss
from training.losses.encoded import EncodedBatch, TowerStates
from training.losses.next_token import NextTokenLoss
from training.losses.triplet import TripletMarginLoss

__all__ = [
    "EmbeddingDistillationLoss",
    "EncodedBatch",
    "NextTokenLoss",
    "SimilarityDistillationLoss",
    "TowerStates",
    "TripletMarginLoss",
]
