"""Gold-only in-batch InfoNCE, the baseline every Syntriever row is compared with (and the authors' released loss)."""

from __future__ import annotations

from collections.abc import Sequence
import torch
import torch.nn.functional as F
from torch import Tensor

from synthir.dense.losses._common import (
    Reduction,
    TemperatureLoss,
    _as_candidates,
    _check_mask,
    _split,
    similarity_scores,
)


def in_batch_infonce_loss(
    q_emb: Tensor,
    cand_emb: Tensor | Sequence[Tensor],
    temperature: float = 0.05,
    *,
    valid_mask: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Gold-only InfoNCE: candidate column 0 is the positive, every other batch candidate a negative."""
    cand = _as_candidates(cand_emb)
    batch_size, num_columns = cand.shape[0], cand.shape[1]
    scores = similarity_scores(q_emb, cand, temperature)
    if valid_mask is not None:
        valid = _check_mask(valid_mask.to(scores.device), batch_size, num_columns, "valid_mask")
        if not bool(valid[:, 0].all()):
            raise ValueError("the gold column (0) must be valid for every query")
        scores = scores.masked_fill(~valid.reshape(1, -1), float("-inf"))
    target = torch.arange(batch_size, device=scores.device) * num_columns
    return F.cross_entropy(scores, target, reduction=reduction)



class InBatchInfoNCELoss(TemperatureLoss):
    """
    Gold-only InfoNCE baseline (in-batch negatives, optional hard negatives). With
    ``s(q, c) = cos(E(q), E(c)) / temperature``, gold passage ``p_i`` (first column after the anchor)
    and ``A`` every candidate of every query in the batch (gold passages plus any hard-negative
    columns)::

        L(q_i) = -log [ e^{s(q_i, p_i)} / sum_{a in A} e^{s(q_i, a)} ]

    averaged over the batch (InfoNCE: van den Oord et al. 2018; in-batch negatives as in DPR, Karpukhin et
    al. 2020). This equals sentence-transformers' ``MultipleNegativesRankingLoss`` with
    ``scale = 1 / temperature``. Fed the Syntriever columns ``(anchor, gold, p+, q_cot, p-)`` it
    reproduces the authors' released training code (p+ and q_cot then count as negatives); feed it
    ``(anchor, gold)`` or ``(anchor, gold, negative_1, ...)`` for the intended gold-only baseline.

    Args:
        model: SentenceTransformer model.
        temperature: tau (default 0.05, i.e. ``scale = 20``).

    Inputs:
        +-------------------------------------------------+--------+
        | Texts                                           | Labels |
        +=================================================+========+
        | (anchor, gold) or (anchor, gold, negative_1, …) | none   |
        +-------------------------------------------------+--------+

    Example:
        ::

            from synthir.dense.losses import InBatchInfoNCELoss

            loss = InBatchInfoNCELoss(model, temperature=0.05)
            trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss)
            trainer.train()
    """

    def compute_loss_from_embeddings(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        """Return the loss from per-column ``(B, d)`` embeddings (anchor first)."""
        q, cand = _split(embeddings, 2)
        return in_batch_infonce_loss(q, cand, self.temperature)
