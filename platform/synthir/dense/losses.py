"""Contrastive and preference losses for training Syntriever-style dense retrievers.

The losses follow Kim & Baek, "Syntriever: How to Train Your Retriever with Synthetic Data from LLMs"
(NAACL Findings 2025, arXiv:2502.03824). Notation: encoder ``E``, ``s(q, c) = cos(E(q), E(c)) / tau``
with ``tau = 0.05`` by default, ``B`` the batch.

Every loss exists twice:

* a pure function on embeddings (``multi_positive_distillation_loss``, ``in_batch_infonce_loss``,
  ``partial_plackett_luce_loss``, ``bradley_terry_loss``) for training loops that are not the
  sentence-transformers Trainer (a Ray Train loop, GradCache, ...);
* an ``nn.Module`` in the sentence-transformers style (``__init__(model, temperature, ...)``,
  ``forward(sentence_features, labels)``) that embeds the input columns and calls the function.

Embedding layout shared by all functions: ``q_emb`` is ``(B, d)``; ``cand_emb`` is ``(B, C, d)``,
row ``j`` holding the ``C`` candidate texts attached to query ``j`` (a ``(B, d)`` tensor or a list of
``C`` tensors of shape ``(B, d)`` is accepted too). Every candidate of every query in the batch sits in
every query's softmax denominator: the score matrix is ``(B, B * C)`` with column ``j * C + c`` holding
candidate ``c`` of query ``j`` (see :func:`similarity_scores`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

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

DistillationMode = Literal["paper", "per_positive", "gold_plus_synthetic"]
Reduction = Literal["mean", "sum", "none"]
_MODES: tuple[str, ...] = ("paper", "per_positive", "gold_plus_synthetic")

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


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# pure functions
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# sentence-transformers modules
# --------------------------------------------------------------------------------------------------


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


class MultiPositiveDistillationLoss(nn.Module):
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
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if not positive_columns:
            raise ValueError("positive_columns must name at least one candidate column")
        self.model = model
        self.temperature = float(temperature)
        self.mode = mode
        self.positive_columns = tuple(int(c) for c in positive_columns)
        self.relabel_column = int(relabel_column)
        self.synthetic_weight = float(synthetic_weight)
        self.gold_column = int(gold_column)

    @property
    def scale(self) -> float:
        """Inverse temperature, as sentence-transformers calls it."""
        return 1.0 / self.temperature

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

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        """Embed the columns and return the batch loss."""
        return self.compute_loss_from_embeddings(_embed(self.model, sentence_features), labels)

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


def _build_cached_distillation_loss() -> type:
    """Define the GradCache variant on first use, so importing this module does not import sentence-transformers."""
    try:
        from sentence_transformers.base.losses.gradcache import CachedLossMixin
    except ImportError as exc:  # pragma: no cover - older sentence-transformers
        raise ImportError("CachedMultiPositiveDistillationLoss needs sentence-transformers >= 6") from exc

    class CachedMultiPositiveDistillationLoss(CachedLossMixin, nn.Module):
        """
        GradCache (Gao et al. 2021) version of :class:`MultiPositiveDistillationLoss`: same loss, same
        columns and labels, but the embeddings are computed in mini-batches of ``mini_batch_size`` rows
        (first without gradients, then again with the cached embedding gradients), so the batch size
        (and with it the number of in-batch negatives) is no longer bounded by activation memory.
        Uses sentence-transformers' ``CachedLossMixin``; roughly 2x slower per example.

        Args:
            model: SentenceTransformer model.
            temperature, mode, positive_columns, relabel_column, synthetic_weight, gold_column:
                as in :class:`MultiPositiveDistillationLoss`.
            mini_batch_size: rows embedded per forward pass.
            mini_batch_num_tokens: optional token budget per forward pass instead of a row count.
            show_progress_bar: show tqdm bars over the mini-batches.

        Example:
            ::

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

    CachedMultiPositiveDistillationLoss.__qualname__ = "CachedMultiPositiveDistillationLoss"
    return CachedMultiPositiveDistillationLoss


def __getattr__(name: str) -> Any:
    """Build ``CachedMultiPositiveDistillationLoss`` lazily (PEP 562)."""
    if name == "CachedMultiPositiveDistillationLoss":
        cls = _build_cached_distillation_loss()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class InBatchInfoNCELoss(nn.Module):
    """
    Gold-only InfoNCE baseline (in-batch negatives, optional hard negatives). With
    ``s(q, c) = cos(E(q), E(c)) / temperature``, gold passage ``p_i`` (first column after the anchor)
    and ``A`` every candidate of every query in the batch (gold passages plus any hard-negative
    columns)::

        L(q_i) = -log [ e^{s(q_i, p_i)} / sum_{a in A} e^{s(q_i, a)} ]

    averaged over the batch. This equals sentence-transformers' ``MultipleNegativesRankingLoss`` with
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

    def __init__(self, model: SentenceTransformer, temperature: float = 0.05) -> None:
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
        """Embed the columns and return the batch loss (labels are ignored)."""
        return self.compute_loss_from_embeddings(_embed(self.model, sentence_features), labels)

    def compute_loss_from_embeddings(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        """Return the loss from per-column ``(B, d)`` embeddings (anchor first)."""
        q, cand = _split(embeddings, 2)
        return in_batch_infonce_loss(q, cand, self.temperature)

    def get_config_dict(self) -> dict[str, Any]:
        """Hyperparameters for the model card."""
        return {"temperature": self.temperature}


class PartialPlackettLuceLoss(nn.Module):
    """
    Syntriever stage-2 alignment loss: the partial Plackett-Luce likelihood of the LLM's preference
    ``c_i^+ > c_i^- > {every other candidate in the batch}`` (paper eq. 12), i.e. the Plackett-Luce
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
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if num_ranked < 1:
            raise ValueError(f"num_ranked must be >= 1, got {num_ranked}")
        self.model = model
        self.temperature = float(temperature)
        self.num_ranked = int(num_ranked)

    @property
    def scale(self) -> float:
        """Inverse temperature, as sentence-transformers calls it."""
        return 1.0 / self.temperature

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        """Embed the columns and return the batch loss (labels are ignored)."""
        return self.compute_loss_from_embeddings(_embed(self.model, sentence_features), labels)

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


class BradleyTerryLoss(nn.Module):
    """
    Bradley-Terry pairwise preference loss (Syntriever's stage-2 ablation). No in-batch candidates;
    with ``s(q, c) = cos(E(q), E(c)) / temperature`` and ``sigma`` the logistic function::

        L(q_i) = -log sigma( s(q_i, c_i^+) - s(q_i, c_i^-) )

    averaged over the batch.

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

    def __init__(self, model: SentenceTransformer, temperature: float = 0.05) -> None:
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
        """Embed the columns and return the batch loss (labels are ignored)."""
        return self.compute_loss_from_embeddings(_embed(self.model, sentence_features), labels)

    def compute_loss_from_embeddings(self, embeddings: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        """Return the loss from per-column ``(B, d)`` embeddings (anchor, preferred, dispreferred)."""
        if len(embeddings) != 3:
            raise ValueError(f"BradleyTerryLoss expects 3 input columns (anchor, c+, c-), got {len(embeddings)}")
        q, cand = _split(embeddings, 3)
        return bradley_terry_loss(q, cand, self.temperature)

    def get_config_dict(self) -> dict[str, Any]:
        """Hyperparameters for the model card."""
        return {"temperature": self.temperature}
