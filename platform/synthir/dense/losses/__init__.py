"""Contrastive and preference losses for training Syntriever-style dense retrievers, one loss per module.

The losses follow Kim & Baek, "Syntriever: How to Train Your Retriever with Synthetic Data from LLMs"
(NAACL Findings 2025, arXiv:2502.03824). Notation: encoder ``E``, ``s(q, c) = cos(E(q), E(c)) / tau``
with ``tau = 0.05`` by default, ``B`` the batch.

Every loss exists twice, in its own module:

* a pure function on embeddings (``multi_positive_distillation_loss``, ``in_batch_infonce_loss``,
  ``partial_plackett_luce_loss``, ``bradley_terry_loss``) for training loops that are not the
  sentence-transformers Trainer (a Ray Train loop, GradCache, ...);
* an ``nn.Module`` in the sentence-transformers style (``__init__(model, temperature, ...)``,
  ``forward(sentence_features, labels)``) that embeds the input columns and calls the function.

The embedding layout they share is described in :mod:`synthir.dense.losses._common`.
"""

from __future__ import annotations

from typing import Any

from synthir.dense.losses._common import default_positive_mask, similarity_scores
from synthir.dense.losses.bradley_terry import BradleyTerryLoss, bradley_terry_loss
from synthir.dense.losses.in_batch_infonce import InBatchInfoNCELoss, in_batch_infonce_loss
from synthir.dense.losses.multi_positive_distillation import (
    DistillationMode,
    MultiPositiveDistillationLoss,
    multi_positive_distillation_loss,
)
from synthir.dense.losses.partial_plackett_luce import PartialPlackettLuceLoss, partial_plackett_luce_loss

__all__ = [
    "DistillationMode",
    "similarity_scores",
    "default_positive_mask",
    "multi_positive_distillation_loss",
    "in_batch_infonce_loss",
    "partial_plackett_luce_loss",
    "bradley_terry_loss",
    "MultiPositiveDistillationLoss",
    "CachedMultiPositiveDistillationLoss",
    "InBatchInfoNCELoss",
    "PartialPlackettLuceLoss",
    "BradleyTerryLoss",
]


def __getattr__(name: str) -> Any:
    """Import ``CachedMultiPositiveDistillationLoss`` on first use (PEP 562): it needs sentence-transformers."""
    if name == "CachedMultiPositiveDistillationLoss":
        from synthir.dense.losses.cached_multi_positive_distillation import CachedMultiPositiveDistillationLoss

        globals()[name] = CachedMultiPositiveDistillationLoss
        return CachedMultiPositiveDistillationLoss
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
