"""Syntriever stage-1 distillation: the multi-positive soft-nearest-neighbour loss (Kim & Baek 2025)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from synthir.dense.losses._common import (
    SYNTRIEVER_CITATION,
    Reduction,
    TemperatureLoss,
    _as_candidates,
    _check_mask,
    _own_block,
    _own_scores,
    _reduce,
    _split,
    default_positive_mask,
    similarity_scores,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DistillationMode = Literal["paper", "per_positive", "gold_plus_synthetic"]
_MODES: tuple[str, ...] = ("paper", "per_positive", "gold_plus_synthetic")


def multi_positive_distillation_loss(
    q_emb: Tensor,
    cand_emb: Tensor | Sequence[Tensor],
    pos_mask: Tensor,
    temperature: float = 0.05,
    *,
    mode: DistillationMode = "paper",
    synthetic_weight: float = 1.0,
    gold_index: int = 0,
    valid_mask: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Syntriever stage-1 multi-positive loss on embeddings; see :class:`MultiPositiveDistillationLoss`."""
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    cand = _as_candidates(cand_emb)
    batch_size, num_columns = cand.shape[0], cand.shape[1]
    scores = similarity_scores(q_emb, cand, temperature)  # (B, B*C)
    pos = _check_mask(pos_mask.to(scores.device), batch_size, num_columns, "pos_mask")
    if valid_mask is not None:
        valid = _check_mask(valid_mask.to(scores.device), batch_size, num_columns, "valid_mask")
        pos = pos & valid
        # an invalid (padding) candidate leaves every query's numerator and denominator
        scores = scores.masked_fill(~valid.reshape(1, -1), float("-inf"))
    num_pos = pos.sum(dim=1)
    if bool((num_pos == 0).any()):
        raise ValueError("every query needs at least one (valid) positive candidate in pos_mask")

    own_pos = _own_block(pos)  # (B, B*C): q_i's own positives
    neg_inf = float("-inf")

    if mode == "paper":
        log_num = torch.logsumexp(scores.masked_fill(~own_pos, neg_inf), dim=1)
        log_den = torch.logsumexp(scores, dim=1)
        return _reduce(log_den - log_num, reduction)

    # everything in the batch that is not one of q_i's own positives
    log_neg = torch.logsumexp(scores.masked_fill(own_pos, neg_inf), dim=1)  # (B,)
    own = _own_scores(scores, num_columns)  # (B, C)
    # -log e^{s_k} / (e^{s_k} + sum_neg e^{s_n}) for every own column k
    terms = torch.logaddexp(own, log_neg[:, None]) - own

    if mode == "per_positive":
        terms = terms.masked_fill(~pos, 0.0)
        return _reduce(terms.sum(dim=1) / num_pos.to(terms.dtype), reduction)

    # mode == "gold_plus_synthetic"
    if not 0 <= gold_index < num_columns:
        raise ValueError(f"gold_index {gold_index} out of range for {num_columns} candidate columns")
    if not bool(pos[:, gold_index].all()):
        raise ValueError("gold_plus_synthetic needs the gold column marked positive (and valid) for every query")
    gold_term = terms[:, gold_index]
    log_num = torch.logsumexp(scores.masked_fill(~own_pos, neg_inf), dim=1)
    log_den = torch.logsumexp(scores, dim=1)
    return _reduce(gold_term + synthetic_weight * (log_den - log_num), reduction)



class MultiPositiveDistillationLoss(TemperatureLoss):
    r"""
    Syntriever stage-1 distillation loss (Kim & Baek 2025, the "modified soft-nearest-neighbour" loss):
    several positives per query are pulled together, hard negatives only repel.

    Inputs are an anchor query and ``C`` candidate columns per row; by default
    ``(anchor, gold p, p+, q_cot, p-, [extra negatives ...])`` with candidate columns 0, 1, 2
    (gold, p+, q_cot) positive. With ``s(q, c) = cos(E(q), E(c)) / temperature``, ``P_i`` the
    positive candidate columns of query ``i`` and ``A`` every candidate of every query in the batch
    (``|A| = B * C``), ``N_i = A \ P_i``:

    ``mode="paper"`` (default, the paper's equation)::

        L(q_i) = -log [ sum_{k in P_i} e^{s(q_i, k)} / sum_{a in A} e^{s(q_i, a)} ]
               = logsumexp_{a in A} s(q_i, a) - logsumexp_{k in P_i} s(q_i, k)

      With the default columns this is exactly
      ``-log (e^{s(q_i,p_i)} + e^{s(q_i,p_i^+)} + e^{s(q_i,q_i^cot)})
      / sum_{j in B} (e^{s(q_i,p_j)} + e^{s(q_i,p_j^+)} + e^{s(q_i,q_j^cot)} + e^{s(q_i,p_j^-)})``.
      A relabelled p+ (the LLM answered "no" to P_relabel) leaves the numerator and stays in the
      denominator, i.e. it becomes a hard negative.

    ``mode="per_positive"`` (variant): one InfoNCE term per positive, each positive competing only
    against the non-positives (the other own positives are dropped from its denominator), averaged
    over the query's positives::

        L(q_i) = (1 / |P_i|) sum_{k in P_i} -log [ e^{s(q_i, k)} / ( e^{s(q_i, k)} + sum_{n in N_i} e^{s(q_i, n)} ) ]

      Note that ``N_i`` contains the other queries' positives (in-batch negatives) and q_i's own
      negatives (p_i^-, a relabelled p_i^+, mined hard negatives).

    ``mode="gold_plus_synthetic"`` (variant): InfoNCE on the gold passage ``g = p_i`` (column
    ``gold_column``), whose denominator is every batch candidate except q_i's *other* positives,
    plus ``synthetic_weight`` times the paper's multi-positive term::

        L(q_i) = -log [ e^{s(q_i, g)} / ( e^{s(q_i, g)} + sum_{n in N_i} e^{s(q_i, n)} ) ]
                 + synthetic_weight * L_paper(q_i)

    The batch loss is the mean over queries. Any number of extra hard-negative columns may follow the
    default four; every candidate of every query sits in every query's denominator.

    The authors' public code computes the numerator, discards it and trains plain InfoNCE on p_i,
    so p_i^+ and q_i^cot act as negatives. That is NOT what this loss does; to reproduce that
    behaviour on purpose, feed the same columns to :class:`InBatchInfoNCELoss`.

    Args:
        model: SentenceTransformer model.
        temperature: tau in ``s = cos / tau`` (paper: 0.05, i.e. ``scale = 20``).
        mode: ``"paper"``, ``"per_positive"`` or ``"gold_plus_synthetic"`` (see above).
        positive_columns: candidate columns (0 = first column after the anchor) that are positive when
            no labels are given. Use ``(0, 1)`` for a ``(anchor, gold, q_cot, ...)`` ablation dataset.
        relabel_column: candidate column that a 1-D ``labels`` tensor (the p+ verdict) switches.
        synthetic_weight: weight of the multi-positive term in ``gold_plus_synthetic``.
        gold_column: the gold passage's candidate column in ``gold_plus_synthetic``.

    Labels (optional, the dataset's ``label`` column):
        - none: ``positive_columns`` are positive, the rest negative;
        - one int/bool per row, shape ``(B,)``: the self-verification verdict for p+ (1 = "yes",
          stays positive; 0 = "no", becomes a hard negative; -1 = unparsed, p+ leaves numerator and
          denominator) applied to ``relabel_column``;
        - a list of ``C`` ints per row, shape ``(B, C)``: 1 marks a positive candidate column, 0 a negative.

    Inputs:
        +--------------------------------------------------------------+-------------------------+
        | Texts                                                        | Labels                  |
        +==============================================================+=========================+
        | (anchor, gold, p_plus, q_cot, p_minus, [negative_1, ...])    | none, (B,) or (B, C)    |
        +--------------------------------------------------------------+-------------------------+

    Example:
        ::

            from datasets import Dataset
            from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
            from synthir.dense.losses import MultiPositiveDistillationLoss

            model = SentenceTransformer("intfloat/e5-base-v2")
            train_dataset = Dataset.from_dict({
                "anchor": ["what causes tides?"],
                "gold": ["Tides are caused by the Moon's gravity ..."],
                "p_plus": ["Ocean tides result from gravitational forces ..."],
                "q_cot": ["what causes tides?\nLet's think step-by-step."],
                "p_minus": ["Surfing is popular on coasts with large waves ..."],
                "label": [1],  # p+ verdict: 1 = relevant, 0 = relabelled as a hard negative
            })
            loss = MultiPositiveDistillationLoss(model, temperature=0.05)
            trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss)
            trainer.train()
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
    ) -> None:
        super().__init__(model, temperature)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if not positive_columns:
            raise ValueError("positive_columns must name at least one candidate column")
        self.mode = mode
        self.positive_columns = tuple(int(c) for c in positive_columns)
        self.relabel_column = int(relabel_column)
        self.synthetic_weight = float(synthetic_weight)
        self.gold_column = int(gold_column)

    def positive_mask(self, labels: Tensor | None, batch_size: int, num_columns: int, device: Any = None) -> Tensor:
        """Turn the ``labels`` of a batch (None, ``(B,)`` verdicts or ``(B, C)``) into a ``(B, C)`` bool mask."""
        if labels is None:
            return default_positive_mask(batch_size, num_columns, self.positive_columns, device)
        labels = labels.to(device)
        if labels.dim() == 2:
            return _check_mask(labels, batch_size, num_columns, "labels")
        if labels.dim() == 1 and labels.shape[0] == batch_size:
            if not 0 <= self.relabel_column < num_columns:
                raise ValueError(f"relabel_column {self.relabel_column} out of range for {num_columns} columns")
            mask = default_positive_mask(batch_size, num_columns, self.positive_columns, device)
            mask[:, self.relabel_column] = labels != 0
            return mask
        raise ValueError(
            f"labels must be None, shape (B,) = ({batch_size},) or (B, C) = {(batch_size, num_columns)}, "
            f"got {tuple(labels.shape)}"
        )

    def compute_loss_from_embeddings(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        """Return the loss from per-column ``(B, d)`` embeddings (anchor first)."""
        q, cand = _split(embeddings, 2)
        pos_mask = self.positive_mask(labels, cand.shape[0], cand.shape[1], q.device)
        valid_mask = None
        if labels is not None and labels.dim() == 1 and bool((labels < 0).any()):
            # verdict -1 (unparsed): the p+ column is neither positive nor negative, so it leaves the loss
            valid_mask = torch.ones_like(pos_mask)
            valid_mask[:, self.relabel_column] = labels.to(q.device) >= 0
        return multi_positive_distillation_loss(
            q,
            cand,
            pos_mask,
            self.temperature,
            mode=self.mode,
            synthetic_weight=self.synthetic_weight,
            gold_index=self.gold_column,
            valid_mask=valid_mask,
        )

    def get_config_dict(self) -> dict[str, Any]:
        """Hyperparameters for the model card."""
        return {
            "temperature": self.temperature,
            "mode": self.mode,
            "positive_columns": self.positive_columns,
            "relabel_column": self.relabel_column,
            "synthetic_weight": self.synthetic_weight,
            "gold_column": self.gold_column,
        }

    @property
    def citation(self) -> str:
        """BibTeX of the Syntriever paper."""
        return SYNTRIEVER_CITATION

