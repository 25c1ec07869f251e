"""Helpers shared by the Syntriever losses: score matrix, masks, reductions, column embedding.

Embedding layout shared by all losses: ``q_emb`` is ``(B, d)``; ``cand_emb`` is ``(B, C, d)``, row ``j``
holding the ``C`` candidate texts attached to query ``j`` (a ``(B, d)`` tensor or a list of ``C`` tensors of
shape ``(B, d)`` is accepted too). Every candidate of every query in the batch sits in every query's softmax
denominator: the score matrix is ``(B, B * C)`` with column ``j * C + c`` holding candidate ``c`` of query ``j``
(see :func:`similarity_scores`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Reduction = Literal["mean", "sum", "none"]

SYNTRIEVER_CITATION = """
@inproceedings{kim2025syntriever,
    title = {Syntriever: How to Train Your Retriever with Synthetic Data from {LLMs}},
    author = {Kim, Minsang and Baek, Seungjun},
    booktitle = {Findings of the Association for Computational Linguistics: NAACL 2025},
    year = {2025},
    eprint = {2502.03824},
    archivePrefix = {arXiv},
}
"""


def _as_candidates(cand_emb: Tensor | Sequence[Tensor]) -> Tensor:
    """Return candidates as a ``(B, C, d)`` tensor from a tensor or a list of ``(B, d)`` columns."""
    if isinstance(cand_emb, Tensor):
        if cand_emb.dim() == 2:
            return cand_emb.unsqueeze(1)
        if cand_emb.dim() == 3:
            return cand_emb
        raise ValueError(f"cand_emb must have shape (B, C, d) or (B, d), got {tuple(cand_emb.shape)}")
    columns = list(cand_emb)
    if not columns:
        raise ValueError("cand_emb must hold at least one candidate column")
    return torch.stack(columns, dim=1)


def _check_inputs(q_emb: Tensor, cand: Tensor, temperature: float) -> None:
    """Validate shapes and temperature shared by every loss."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if q_emb.dim() != 2:
        raise ValueError(f"q_emb must have shape (B, d), got {tuple(q_emb.shape)}")
    if cand.shape[0] != q_emb.shape[0] or cand.shape[-1] != q_emb.shape[-1]:
        raise ValueError(
            f"cand_emb {tuple(cand.shape)} does not match q_emb {tuple(q_emb.shape)}: expected (B, C, d)"
        )


def _check_mask(mask: Tensor, batch_size: int, num_columns: int, name: str) -> Tensor:
    """Validate a ``(B, C)`` mask and return it as bool."""
    if tuple(mask.shape) != (batch_size, num_columns):
        raise ValueError(f"{name} must have shape (B, C) = {(batch_size, num_columns)}, got {tuple(mask.shape)}")
    return mask if mask.dtype == torch.bool else mask != 0


def _reduce(per_query: Tensor, reduction: Reduction) -> Tensor:
    """Apply a ``mean``/``sum``/``none`` reduction over the per-query losses."""
    if reduction == "mean":
        return per_query.mean()
    if reduction == "sum":
        return per_query.sum()
    if reduction == "none":
        return per_query
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _own_block(mask: Tensor) -> Tensor:
    """Spread a per-query ``(B, C)`` mask over query ``i``'s own block of the ``(B, B*C)`` score matrix."""
    batch_size, num_columns = mask.shape
    eye = torch.eye(batch_size, dtype=torch.bool, device=mask.device)
    return (eye[:, :, None] & mask[:, None, :]).reshape(batch_size, batch_size * num_columns)


def _own_scores(scores: Tensor, num_columns: int) -> Tensor:
    """Pick the ``(B, C)`` scores of each query against its own candidates out of ``(B, B*C)``."""
    batch_size = scores.shape[0]
    rows = torch.arange(batch_size, device=scores.device)
    return scores.reshape(batch_size, batch_size, num_columns)[rows, rows]


def similarity_scores(q_emb: Tensor, cand_emb: Tensor | Sequence[Tensor], temperature: float = 0.05) -> Tensor:
    """Return ``cos(q_i, c_{j,c}) / temperature`` as a ``(B, B*C)`` matrix, column ``j*C + c``."""
    cand = _as_candidates(cand_emb)
    _check_inputs(q_emb, cand, temperature)
    q = F.normalize(q_emb, p=2, dim=-1)
    c = F.normalize(cand.reshape(-1, cand.shape[-1]), p=2, dim=-1)
    scores = (q @ c.T) / temperature
    if scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()  # keep the logsumexp in fp32 under mixed precision
    return scores


def default_positive_mask(
    batch_size: int,
    num_columns: int,
    positive_columns: Sequence[int] = (0, 1, 2),
    device: torch.device | str | None = None,
) -> Tensor:
    """Return a ``(B, C)`` bool mask with ``positive_columns`` True (default: gold, p+, q_cot)."""
    bad = [c for c in positive_columns if not 0 <= c < num_columns]
    if bad:
        raise ValueError(f"positive_columns {bad} out of range for {num_columns} candidate columns")
    mask = torch.zeros(batch_size, num_columns, dtype=torch.bool, device=device)
    mask[:, list(positive_columns)] = True
    return mask


def _embed(model: nn.Module, sentence_features: Iterable[dict[str, Tensor]]) -> list[Tensor]:
    """Embed every input column with the model, one ``(B, d)`` tensor per column."""
    try:  # sentence-transformers >= 6: one merged forward pass for the like-width candidate columns
        from sentence_transformers.base.losses.merged_forward import embed_columns
    except ImportError:  # pragma: no cover - older sentence-transformers
        embed_columns = None
    if embed_columns is not None:
        return embed_columns(model, sentence_features)
    return [model(features)["sentence_embedding"] for features in sentence_features]


def _split(embeddings: Sequence[Tensor], minimum: int) -> tuple[Tensor, Tensor]:
    """Split column embeddings into the anchor ``(B, d)`` and the candidates ``(B, C, d)``."""
    if len(embeddings) < minimum:
        raise ValueError(f"expected at least {minimum} input columns (anchor + candidates), got {len(embeddings)}")
    return embeddings[0], torch.stack(list(embeddings[1:]), dim=1)


class TemperatureLoss(nn.Module):
    """Base of the losses here, as sentence-transformers writes them: a model, a positive temperature tau, and
    ``forward`` = embed every column, then ``compute_loss_from_embeddings`` (which a subclass defines)."""

    def __init__(self, model: nn.Module, temperature: float = 0.05) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.model = model
        self.temperature = float(temperature)

    @property
    def scale(self) -> float:
        """Inverse temperature, as sentence-transformers calls it."""
        return 1.0 / self.temperature

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        """Embed the columns and return the batch loss."""
        return self.compute_loss_from_embeddings(_embed(self.model, sentence_features), labels)

    def compute_loss_from_embeddings(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        """The loss from per-column ``(B, d)`` embeddings (anchor first)."""
        raise NotImplementedError

    def get_config_dict(self) -> dict[str, float]:
        """Hyperparameters for the model card."""
        return {"temperature": self.temperature}
