"""GradCache version of the Syntriever stage-1 loss: the same loss at batch sizes activation memory would not allow.

Importing this module imports sentence-transformers (>= 6, for ``CachedLossMixin``); the package builds the class
on first use, so ``import synthir.dense.losses`` stays light.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from sentence_transformers.base.losses.gradcache import CachedLossMixin
from torch import Tensor, nn

from synthir.dense.losses._common import SYNTRIEVER_CITATION
from synthir.dense.losses.multi_positive_distillation import DistillationMode, MultiPositiveDistillationLoss

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


class CachedMultiPositiveDistillationLoss(CachedLossMixin, nn.Module):
    """
    GradCache (Gao et al. 2021) version of :class:`MultiPositiveDistillationLoss`: same loss, same
    columns and labels, but the embeddings are computed in mini-batches of ``mini_batch_size`` rows
    (first without gradients, then again with the cached embedding gradients), so the batch size
    (and with it the number of in-batch negatives) is no longer bounded by activation memory.
    Uses sentence-transformers' ``CachedLossMixin``; roughly 2x slower per example. The value is exactly the
    stage-1 loss of Kim & Baek 2025::

        L(q_i) = logsumexp_{a in A} s(q_i, a) - logsumexp_{k in P_i} s(q_i, k)

    with ``A`` every candidate of the whole (large) batch and ``P_i`` the query's own positives; only the
    memory profile changes (GradCache: Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under
    Memory Limited Setup").

    Args:
        model: SentenceTransformer model.
        temperature, mode, positive_columns, relabel_column, synthetic_weight, gold_column:
            as in :class:`MultiPositiveDistillationLoss`.
        mini_batch_size: rows embedded per forward pass.
        mini_batch_num_tokens: optional token budget per forward pass instead of a row count.
        show_progress_bar: show tqdm bars over the mini-batches.

    Example:
        ::

            from synthir.dense.losses import CachedMultiPositiveDistillationLoss

            # 256 groups per step, embedded 16 rows at a time
            loss = CachedMultiPositiveDistillationLoss(model, temperature=0.05, mini_batch_size=16)
            trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss)
    """

    def __init__(
        self,
        model: SentenceTransformer,
        temperature: float = 0.05,
        mode: DistillationMode = "paper",
        positive_columns: Sequence[int] = (0, 1, 2),
        relabel_column: int = 1,
        synthetic_weight: float = 1.0,
        gold_column: int = 0,
        mini_batch_size: int = 32,
        mini_batch_num_tokens: int | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.loss = MultiPositiveDistillationLoss(
            model,
            temperature=temperature,
            mode=mode,
            positive_columns=positive_columns,
            relabel_column=relabel_column,
            synthetic_weight=synthetic_weight,
            gold_column=gold_column,
        )
        self.mini_batch_size = mini_batch_size
        self.mini_batch_num_tokens = mini_batch_num_tokens
        self.show_progress_bar = show_progress_bar

    @property
    def temperature(self) -> float:
        """Temperature of the wrapped loss."""
        return self.loss.temperature

    @property
    def scale(self) -> float:
        """Inverse temperature, as sentence-transformers calls it."""
        return self.loss.scale

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False
    ) -> Tensor:
        """Return the loss over the whole batch from per-column lists of mini-batch embeddings."""
        embeddings = [torch.cat(column) for column in reps]
        loss = self.loss.compute_loss_from_embeddings(embeddings, labels)
        if with_backward:
            loss.backward()
            loss = loss.detach()
        return loss

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        """Run the GradCache forward pass and return the batch loss."""
        sentence_features = list(sentence_features)
        if len(sentence_features) < 2:
            raise ValueError(f"expected at least 2 input columns, got {len(sentence_features)}")
        return self.forward_cached(sentence_features, labels)

    def get_config_dict(self) -> dict[str, Any]:
        """Hyperparameters for the model card."""
        return {
            **self.loss.get_config_dict(),
            "mini_batch_size": self.mini_batch_size,
            "mini_batch_num_tokens": self.mini_batch_num_tokens,
        }

    @property
    def citation(self) -> str:
        """BibTeX of the Syntriever paper."""
        return SYNTRIEVER_CITATION
