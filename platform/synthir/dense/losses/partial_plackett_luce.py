"""Syntriever stage-2 alignment: the partial Plackett-Luce loss over LLM preferences (Kim & Baek 2025, eq. 12)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from synthir.dense.losses._common import (
    SYNTRIEVER_CITATION,
    Reduction,
    TemperatureLoss,
    _as_candidates,
    _own_block,
    _own_scores,
    _reduce,
    _split,
    similarity_scores,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def partial_plackett_luce_loss(
    q_emb: Tensor,
    cand_emb: Tensor | Sequence[Tensor],
    temperature: float = 0.05,
    *,
    num_ranked: int = 2,
    reduction: Reduction = "mean",
) -> Tensor:
    """Syntriever stage-2 partial Plackett-Luce loss: own columns ``0 > 1 > ... > num_ranked-1 > rest``."""
    cand = _as_candidates(cand_emb)
    batch_size, num_columns = cand.shape[0], cand.shape[1]
    if not 1 <= num_ranked <= num_columns:
        raise ValueError(f"num_ranked must be in [1, {num_columns}], got {num_ranked}")
    scores = similarity_scores(q_emb, cand, temperature)  # (B, B*C)
    own = _own_scores(scores, num_columns)  # (B, C)
    removed = torch.zeros(batch_size, num_columns, dtype=torch.bool, device=scores.device)
    per_query = scores.new_zeros(batch_size)
    for t in range(num_ranked):
        # stage t: pick own column t among everything not yet placed (columns 0..t-1 are removed)
        log_den = torch.logsumexp(scores.masked_fill(_own_block(removed), float("-inf")), dim=1)
        per_query = per_query + (log_den - own[:, t])
        removed = removed.clone()
        removed[:, t] = True
    return _reduce(per_query, reduction)



class PartialPlackettLuceLoss(TemperatureLoss):
    """
    Syntriever stage-2 alignment loss: the partial Plackett-Luce likelihood of the LLM's preference
    ``c_i^+ > c_i^- > {every other candidate in the batch}`` (Kim & Baek 2025, eq. 12), i.e. the Plackett-Luce
    probability of the ranking marginalised over the order of everything after the top two. With
    ``s(q, c) = cos(E(q), E(c)) / temperature`` and ``A`` all candidates in the batch
    (``{c_j^+, c_j^-}_{j in B}`` plus any extra columns)::

        L(q_i) = -log [ e^{s(q_i, c_i^+)} / sum_{a in A} e^{s(q_i, a)}
                        * e^{s(q_i, c_i^-)} / sum_{a in A \\ {c_i^+}} e^{s(q_i, a)} ]

    where the second denominator is ``e^{s(q_i,c_i^-)} + sum_{j != i} (e^{s(q_i,c_j^+)} + e^{s(q_i,c_j^-)})``.
    Batches should hold distinct queries. Extra candidate columns after ``c^-`` join the unranked
    pool; ``num_ranked`` generalises the ranked prefix (``num_ranked=1`` is InfoNCE on ``c^+``).

    Args:
        model: SentenceTransformer model.
        temperature: tau (default 0.05).
        num_ranked: length of the ranked prefix of each row's own candidate columns (default 2).

    Inputs:
        +-----------------------------------------------------+--------+
        | Texts                                               | Labels |
        +=====================================================+========+
        | (anchor, preferred, dispreferred, [extra_1, ...])   | none   |
        +-----------------------------------------------------+--------+

    Example:
        ::

            from datasets import Dataset
            from synthir.dense.losses import PartialPlackettLuceLoss

            train_dataset = Dataset.from_dict({
                "anchor": ["what causes tides?"],
                "chosen": ["Tides are caused by the Moon's gravity ..."],
                "rejected": ["Tide tables list high and low water times ..."],
            })
            loss = PartialPlackettLuceLoss(model, temperature=0.05)
            trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss)
            trainer.train()
    """

    def __init__(self, model: SentenceTransformer, temperature: float = 0.05, num_ranked: int = 2) -> None:
        super().__init__(model, temperature)
        if num_ranked < 1:
            raise ValueError(f"num_ranked must be >= 1, got {num_ranked}")
        self.num_ranked = int(num_ranked)

    def compute_loss_from_embeddings(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        """Return the loss from per-column ``(B, d)`` embeddings (anchor first)."""
        q, cand = _split(embeddings, 1 + self.num_ranked)
        return partial_plackett_luce_loss(q, cand, self.temperature, num_ranked=self.num_ranked)

    def get_config_dict(self) -> dict[str, Any]:
        """Hyperparameters for the model card."""
        return {"temperature": self.temperature, "num_ranked": self.num_ranked}

    @property
    def citation(self) -> str:
        """BibTeX of the Syntriever paper."""
        return SYNTRIEVER_CITATION
