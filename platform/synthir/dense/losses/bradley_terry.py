"""Bradley-Terry pairwise preference loss, Syntriever's stage-2 ablation (Kim & Baek 2025)."""

from __future__ import annotations

from collections.abc import Sequence
import torch
import torch.nn.functional as F
from torch import Tensor

from synthir.dense.losses._common import (
    Reduction,
    TemperatureLoss,
    _as_candidates,
    _check_inputs,
    _reduce,
    _split,
)


def bradley_terry_loss(
    q_emb: Tensor,
    cand_emb: Tensor | Sequence[Tensor],
    temperature: float = 0.05,
    *,
    reduction: Reduction = "mean",
) -> Tensor:
    """Bradley-Terry ablation ``-log sigmoid(s(q, c+) - s(q, c-))``; columns ``(c+, c-)``."""
    cand = _as_candidates(cand_emb)
    if cand.shape[1] != 2:
        raise ValueError(f"bradley_terry_loss needs exactly 2 candidate columns (c+, c-), got {cand.shape[1]}")
    _check_inputs(q_emb, cand, temperature)
    q = F.normalize(q_emb, p=2, dim=-1)
    c = F.normalize(cand, p=2, dim=-1)
    s = torch.einsum("bd,bcd->bc", q, c) / temperature
    if s.dtype in (torch.float16, torch.bfloat16):
        s = s.float()
    return _reduce(-F.logsigmoid(s[:, 0] - s[:, 1]), reduction)



class BradleyTerryLoss(TemperatureLoss):
    """
    Bradley-Terry pairwise preference loss (Syntriever's stage-2 ablation). No in-batch candidates;
    with ``s(q, c) = cos(E(q), E(c)) / temperature`` and ``sigma`` the logistic function::

        L(q_i) = -log sigma( s(q_i, c_i^+) - s(q_i, c_i^-) )

    averaged over the batch (Bradley & Terry 1952; the pairwise ablation of Kim & Baek 2025's stage 2, which
    drops the in-batch candidates the partial Plackett-Luce loss ranks against).

    Args:
        model: SentenceTransformer model.
        temperature: tau (default 0.05).

    Inputs:
        +--------------------------------------+--------+
        | Texts                                | Labels |
        +======================================+========+
        | (anchor, preferred, dispreferred)    | none   |
        +--------------------------------------+--------+

    Example:
        ::

            from synthir.dense.losses import BradleyTerryLoss

            loss = BradleyTerryLoss(model, temperature=0.05)
            trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss)
            trainer.train()
    """

    def compute_loss_from_embeddings(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        """Return the loss from per-column ``(B, d)`` embeddings (anchor, preferred, dispreferred)."""
        if len(embeddings) != 3:
            raise ValueError(f"BradleyTerryLoss expects 3 input columns (anchor, c+, c-), got {len(embeddings)}")
        q, cand = _split(embeddings, 3)
        return bradley_terry_loss(q, cand, self.temperature)
