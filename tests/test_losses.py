"""Tests for synthir.dense.losses.

Every expected value is computed by hand with ``math.exp``/``math.log`` from an explicit table of cosine
similarities (or, for the Plackett-Luce loss, by brute-force enumeration of permutations), never by calling
the function under test.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

from synthir.dense.losses import (
    BradleyTerryLoss,
    InBatchInfoNCELoss,
    MultiPositiveDistillationLoss,
    PartialPlackettLuceLoss,
    bradley_terry_loss,
    default_positive_mask,
    in_batch_infonce_loss,
    multi_positive_distillation_loss,
    partial_plackett_luce_loss,
    similarity_scores,
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny tensors run far faster on one thread, especially on a busy 2-core machine; restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --------------------------------------------------------------------------------------------------
# A 2-query batch in 3 dimensions whose cosines are simple numbers. Vectors are deliberately not unit
# length, so the losses must normalise them.
#
#   q_1 = (5, 0, 0)      q_2 = (0, 0.5, 0)
#   row 1: p_1 = (4, 3, 0)   p_1^+ = (3, 0, 4)    q_1^cot = (2, 0, 0)   p_1^- = (0, 0, 1)
#   row 2: p_2 = (3, 4, 0)   p_2^+ = (0, -5, 0)   q_2^cot = (0, 3, 4)   p_2^- = (3, -4, 0)
# --------------------------------------------------------------------------------------------------
GOLD, PPLUS, QCOT, PMINUS = 0, 1, 2, 3
C = 4

Q = [[5.0, 0.0, 0.0], [0.0, 0.5, 0.0]]
CAND = [
    [[4.0, 3.0, 0.0], [3.0, 0.0, 4.0], [2.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
    [[3.0, 4.0, 0.0], [0.0, -5.0, 0.0], [0.0, 3.0, 4.0], [3.0, -4.0, 0.0]],
]
# COS[i][j][c] = cos(q_i, candidate c of row j), worked out by hand from the vectors above.
COS = [
    [[0.8, 0.6, 1.0, 0.0], [0.6, 0.0, 0.0, 0.6]],
    [[0.6, 0.0, 0.0, 0.0], [0.8, -1.0, 0.6, -0.8]],
]


def q_t() -> torch.Tensor:
    return torch.tensor(Q, dtype=torch.float64)


def cand_t(columns: list[int] | None = None) -> torch.Tensor:
    cand = torch.tensor(CAND, dtype=torch.float64)
    return cand if columns is None else cand[:, columns]


def e(i: int, j: int, c: int, tau: float) -> float:
    """exp(s(q_i, candidate c of row j)) with s = cos / tau."""
    return math.exp(COS[i][j][c] / tau)


def batch_sum(i: int, tau: float, columns=(GOLD, PPLUS, QCOT, PMINUS)) -> float:
    return sum(e(i, j, c, tau) for j in range(2) for c in columns)


def hand_paper_loss(tau: float, positives: list[list[int]]) -> float:
    losses = []
    for i in range(2):
        num = sum(e(i, i, c, tau) for c in positives[i])
        den = batch_sum(i, tau)
        losses.append(-math.log(num / den))
    return sum(losses) / 2


DEFAULT_POS = [[GOLD, PPLUS, QCOT], [GOLD, PPLUS, QCOT]]


def mask_from(positives: list[list[int]]) -> torch.Tensor:
    mask = torch.zeros(2, C, dtype=torch.bool)
    for i, cols in enumerate(positives):
        mask[i, cols] = True
    return mask


def test_similarity_scores_table():
    scores = similarity_scores(q_t(), cand_t(), temperature=1.0)
    expected = torch.tensor([[COS[i][j][c] for j in range(2) for c in range(C)] for i in range(2)], dtype=torch.float64)
    torch.testing.assert_close(scores, expected)


# ------------------------------------------------------------------ stage 1: multi-positive distillation


@pytest.mark.parametrize("tau", [1.0, 0.5, 0.05])
def test_paper_loss_matches_hand_computation(tau):
    # L(q_i) = -log (e^{s(q_i,p_i)} + e^{s(q_i,p_i^+)} + e^{s(q_i,q_i^cot)})
    #               / sum_j (e^{s(q_i,p_j)} + e^{s(q_i,p_j^+)} + e^{s(q_i,q_j^cot)} + e^{s(q_i,p_j^-)})
    expected = 0.0
    for i in range(2):
        num = e(i, i, GOLD, tau) + e(i, i, PPLUS, tau) + e(i, i, QCOT, tau)
        den = sum(
            e(i, j, GOLD, tau) + e(i, j, PPLUS, tau) + e(i, j, QCOT, tau) + e(i, j, PMINUS, tau) for j in range(2)
        )
        expected += -math.log(num / den) / 2
    mask = default_positive_mask(2, C)
    loss = multi_positive_distillation_loss(q_t(), cand_t(), mask, temperature=tau)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_relabelled_p_plus_leaves_numerator_stays_in_denominator():
    tau = 0.5
    relabelled = [[GOLD, QCOT], [GOLD, PPLUS, QCOT]]  # LLM said "no" to p_1^+
    loss_default = multi_positive_distillation_loss(q_t(), cand_t(), mask_from(DEFAULT_POS), tau).item()
    loss_relabel = multi_positive_distillation_loss(q_t(), cand_t(), mask_from(relabelled), tau).item()

    # by hand: row 1's numerator loses e^{s(q_1,p_1^+)}; its denominator is unchanged (8 terms)
    num1 = e(0, 0, GOLD, tau) + e(0, 0, QCOT, tau)
    den1 = batch_sum(0, tau)
    num2 = e(1, 1, GOLD, tau) + e(1, 1, PPLUS, tau) + e(1, 1, QCOT, tau)
    den2 = batch_sum(1, tau)
    assert loss_relabel == pytest.approx((-math.log(num1 / den1) - math.log(num2 / den2)) / 2, rel=1e-12)

    # and the change is exactly the numerator's change, i.e. the denominator still holds p_1^+
    num1_default = num1 + e(0, 0, PPLUS, tau)
    assert loss_relabel - loss_default == pytest.approx((math.log(num1_default) - math.log(num1)) / 2, rel=1e-10)
    # dropping p_1^+ from the batch altogether would give a different value
    dropped = (-math.log(num1 / (den1 - e(0, 0, PPLUS, tau))) - math.log(num2 / (den2 - e(1, 0, PPLUS, tau)))) / 2
    assert loss_relabel != pytest.approx(dropped, rel=1e-6)


def test_module_labels_match_mask():
    tau = 0.5
    loss_fn = MultiPositiveDistillationLoss(model=None, temperature=tau)
    emb = [q_t()] + [cand_t()[:, c] for c in range(C)]
    relabelled = mask_from([[GOLD, QCOT], [GOLD, PPLUS, QCOT]])
    expected = multi_positive_distillation_loss(q_t(), cand_t(), relabelled, tau)
    default = multi_positive_distillation_loss(q_t(), cand_t(), mask_from(DEFAULT_POS), tau)
    # (B,) p+ verdicts, (B, C) masks and None are all accepted
    torch.testing.assert_close(loss_fn.compute_loss_from_embeddings(emb, torch.tensor([0, 1])), expected)
    torch.testing.assert_close(loss_fn.compute_loss_from_embeddings(emb, relabelled.long()), expected)
    torch.testing.assert_close(loss_fn.compute_loss_from_embeddings(emb, None), default)
    torch.testing.assert_close(loss_fn.compute_loss_from_embeddings(emb, torch.tensor([1, 1])), default)
    with pytest.raises(ValueError):
        loss_fn.compute_loss_from_embeddings(emb, torch.ones(2, 3))


@pytest.mark.parametrize("positives", [DEFAULT_POS, [[GOLD, QCOT], [GOLD, PPLUS, QCOT]]])
def test_per_positive_matches_hand_computation(positives):
    tau = 0.5
    expected = 0.0
    for i in range(2):
        # negatives of q_i: every candidate in the batch that is not one of q_i's own positives
        neg = sum(e(i, j, c, tau) for j in range(2) for c in range(C) if not (j == i and c in positives[i]))
        terms = [-math.log(e(i, i, k, tau) / (e(i, i, k, tau) + neg)) for k in positives[i]]
        expected += sum(terms) / len(terms) / 2
    loss = multi_positive_distillation_loss(q_t(), cand_t(), mask_from(positives), tau, mode="per_positive")
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_gold_plus_synthetic_matches_hand_computation():
    tau, w = 0.5, 0.3
    positives = [[GOLD, PPLUS, QCOT], [GOLD, QCOT]]
    expected = 0.0
    for i in range(2):
        neg = sum(e(i, j, c, tau) for j in range(2) for c in range(C) if not (j == i and c in positives[i]))
        gold = -math.log(e(i, i, GOLD, tau) / (e(i, i, GOLD, tau) + neg))
        multi = -math.log(sum(e(i, i, c, tau) for c in positives[i]) / batch_sum(i, tau))
        expected += (gold + w * multi) / 2
    loss = multi_positive_distillation_loss(
        q_t(), cand_t(), mask_from(positives), tau, mode="gold_plus_synthetic", synthetic_weight=w
    )
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError):  # the gold column must be a positive
        multi_positive_distillation_loss(
            q_t(), cand_t(), mask_from([[PPLUS], [GOLD]]), tau, mode="gold_plus_synthetic"
        )


def test_extra_hard_negative_columns_enter_every_denominator():
    tau = 0.5
    extra = torch.tensor([[[0.0, 1.0, 0.0]], [[-1.0, 0.0, 0.0]]], dtype=torch.float64)  # cos with q: (0,1), (-1,0)
    cand = torch.cat([cand_t(), extra], dim=1)
    mask = torch.cat([mask_from(DEFAULT_POS), torch.zeros(2, 1, dtype=torch.bool)], dim=1)
    extra_cos = [[0.0, -1.0], [1.0, 0.0]]  # extra_cos[i][j] = cos(q_i, extra negative of row j)
    expected = 0.0
    for i in range(2):
        num = sum(e(i, i, c, tau) for c in DEFAULT_POS[i])
        den = batch_sum(i, tau) + sum(math.exp(x / tau) for x in extra_cos[i])
        expected += -math.log(num / den) / 2
    loss = multi_positive_distillation_loss(q_t(), cand, mask, tau)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_valid_mask_equals_dropping_the_column():
    tau = 0.5
    valid = torch.ones(2, C, dtype=torch.bool)
    valid[:, PMINUS] = False
    q = q_t().requires_grad_()
    cand = cand_t().requires_grad_()
    loss = multi_positive_distillation_loss(q, cand, mask_from(DEFAULT_POS), tau, valid_mask=valid)
    dropped = multi_positive_distillation_loss(q_t(), cand_t([0, 1, 2]), mask_from(DEFAULT_POS)[:, :3], tau)
    torch.testing.assert_close(loss, dropped)
    loss.backward()
    assert torch.isfinite(cand.grad).all() and torch.isfinite(q.grad).all()
    assert (cand.grad[:, PMINUS] == 0).all()


def test_query_without_positive_is_rejected():
    with pytest.raises(ValueError):
        multi_positive_distillation_loss(q_t(), cand_t(), mask_from([[GOLD], []]), 0.5)


def test_distillation_gives_gradient_to_gold_and_synthetic_positives():
    cand = cand_t().requires_grad_()
    loss = multi_positive_distillation_loss(q_t(), cand, default_positive_mask(2, C), 0.05)
    loss.backward()
    for column in (GOLD, PPLUS, QCOT, PMINUS):
        assert cand.grad[:, column].abs().sum(dim=-1).gt(0).all(), column


def test_authors_defect_is_absent():
    """The authors' code trains InfoNCE on p_i alone, so p_i^+ and q_i^cot act as negatives. Ours must not."""
    tau = 0.5
    mask = default_positive_mask(2, C)
    ours = multi_positive_distillation_loss(q_t(), cand_t(), mask, tau).item()
    defect = in_batch_infonce_loss(q_t(), cand_t(), tau).item()  # all four columns, only gold positive
    # hand value of the defective loss: -log e^{s(q_i,p_i)} / (all 8)
    hand_defect = sum(-math.log(e(i, i, GOLD, tau) / batch_sum(i, tau)) for i in range(2)) / 2
    assert defect == pytest.approx(hand_defect, rel=1e-12)
    assert ours == pytest.approx(hand_paper_loss(tau, DEFAULT_POS), rel=1e-12)
    assert ours < defect - 0.1

    # moving p_1^+ towards q_1 (cos 0.6 -> 0.8) must lower our loss, and raises the defective one
    moved = cand_t()
    moved[0, PPLUS] = torch.tensor([4.0, 0.0, 3.0], dtype=torch.float64)
    assert multi_positive_distillation_loss(q_t(), moved, mask, tau).item() < ours
    assert in_batch_infonce_loss(q_t(), moved, tau).item() > defect

    # the gradient pulls the synthetic positives towards their query (a descent step raises their cosine);
    # the defective loss pushes them away. Checked where the cosine is not at an extremum (zero gradient):
    # p_1^+ (cos 0.6) and q_2^cot (cos 0.6).
    toward_q = torch.nn.functional.normalize(q_t(), dim=-1)
    for loss_fn, sign in ((lambda c: multi_positive_distillation_loss(q_t(), c, mask, tau), -1.0),
                          (lambda c: in_batch_infonce_loss(q_t(), c, tau), 1.0)):
        cand = cand_t().requires_grad_()
        loss_fn(cand).backward()
        assert sign * torch.dot(cand.grad[0, PPLUS], toward_q[0]) > 0
        assert sign * torch.dot(cand.grad[1, QCOT], toward_q[1]) > 0


# ------------------------------------------------------------------ gold-only baseline


def test_in_batch_infonce_matches_hand_computation():
    tau = 0.5
    cols = [GOLD, PMINUS]
    expected = sum(-math.log(e(i, i, GOLD, tau) / batch_sum(i, tau, cols)) for i in range(2)) / 2
    assert in_batch_infonce_loss(q_t(), cand_t(cols), tau).item() == pytest.approx(expected, rel=1e-12)
    # gold only, shape (B, d)
    expected_gold = sum(-math.log(e(i, i, GOLD, tau) / batch_sum(i, tau, [GOLD])) for i in range(2)) / 2
    assert in_batch_infonce_loss(q_t(), cand_t()[:, GOLD], tau).item() == pytest.approx(expected_gold, rel=1e-12)


def test_in_batch_infonce_equals_sentence_transformers_mnrl():
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    tau = 0.05
    torch.manual_seed(0)
    q, cand = torch.randn(5, 8, dtype=torch.float64), torch.randn(5, 3, 8, dtype=torch.float64)
    mnrl = MultipleNegativesRankingLoss(model=torch.nn.Identity(), scale=1 / tau)
    expected = mnrl.compute_loss_from_embeddings([q] + [cand[:, c] for c in range(3)], None)
    torch.testing.assert_close(in_batch_infonce_loss(q, cand, tau), expected)


# ------------------------------------------------------------------ stage 2: partial Plackett-Luce


def test_partial_plackett_luce_matches_hand_computation():
    tau = 0.5
    cols = [GOLD, PPLUS]  # c_i^+ = p_i, c_i^- = p_i^+
    expected = 0.0
    for i in range(2):
        all_ = sum(e(i, j, c, tau) for j in range(2) for c in cols)
        first = e(i, i, GOLD, tau) / all_
        second = e(i, i, PPLUS, tau) / (e(i, i, PPLUS, tau) + sum(e(i, 1 - i, c, tau) for c in cols))
        expected += -math.log(first * second) / 2
    loss = partial_plackett_luce_loss(q_t(), cand_t(cols), tau)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _brute_force_pl(q: list, cand: list, tau: float, num_ranked: int) -> float:
    """Mean over queries of -log P(own columns 0..num_ranked-1 ranked first, in order), by enumeration."""
    batch, columns = len(cand), len(cand[0])
    flat = [cand[j][c] for j in range(batch) for c in range(columns)]
    total = 0.0
    for i in range(batch):
        w = [math.exp(_cos(q[i], x) / tau) for x in flat]
        prefix = tuple(i * columns + t for t in range(num_ranked))
        prob = 0.0
        for perm in itertools.permutations(range(len(flat))):
            if perm[:num_ranked] != prefix:
                continue
            p = 1.0
            for t in range(len(perm)):
                p *= w[perm[t]] / sum(w[u] for u in perm[t:])
            prob += p
        total += -math.log(prob)
    return total / batch


@pytest.mark.parametrize(
    ("batch", "columns", "num_ranked"), [(3, 2, 2), (2, 3, 2), (2, 3, 1), (2, 3, 3), (1, 2, 2)]
)
def test_partial_plackett_luce_equals_brute_force_marginal(batch, columns, num_ranked):
    rng = random.Random(batch * 10 + columns + num_ranked)
    d, tau = 4, 0.5
    q = [[rng.gauss(0, 1) for _ in range(d)] for _ in range(batch)]
    cand = [[[rng.gauss(0, 1) for _ in range(d)] for _ in range(columns)] for _ in range(batch)]
    expected = _brute_force_pl(q, cand, tau, num_ranked)
    loss = partial_plackett_luce_loss(
        torch.tensor(q, dtype=torch.float64), torch.tensor(cand, dtype=torch.float64), tau, num_ranked=num_ranked
    )
    assert loss.item() == pytest.approx(expected, rel=1e-9)


# ------------------------------------------------------------------ Bradley-Terry


def test_bradley_terry_is_minus_log_sigmoid_of_difference():
    tau = 0.05
    # q_1: c+ = p_1 (cos 0.8), c- = p_1^- (cos 0);  q_2: c+ = q_2^cot (cos 0.6), c- = p_2^+ (cos -1)
    cand = torch.stack([torch.tensor([CAND[0][GOLD], CAND[0][PMINUS]]), torch.tensor([CAND[1][QCOT], CAND[1][PPLUS]])])
    diffs = [(0.8 - 0.0) / tau, (0.6 - (-1.0)) / tau]
    expected = sum(-math.log(1.0 / (1.0 + math.exp(-x))) for x in diffs) / 2
    loss = bradley_terry_loss(q_t(), cand.double(), tau)
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    # a reversed preference: -log sigmoid(-x)
    reversed_expected = sum(-math.log(1.0 / (1.0 + math.exp(x))) for x in diffs) / 2
    assert bradley_terry_loss(q_t(), cand.double().flip(1), tau).item() == pytest.approx(reversed_expected, rel=1e-9)


# ------------------------------------------------------------------ modules through a tiny SentenceTransformer

WORDS = (
    "the a of is what why how does cause tide tides moon sun gravity ocean water wave surf coast "
    "cat dog sat ran mat fast slow red blue think step let us passage query answer"
).split()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny_bert")
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return SentenceTransformer(modules=[Transformer(str(path)), Pooling(32, "mean")], device="cpu")


TEXTS = {
    "anchor": ["what does cause tides", "why is the cat fast", "how does a wave surf"],
    "gold": ["the moon gravity is the cause of tides", "the cat ran fast", "ocean water wave coast"],
    "p_plus": ["moon and sun gravity cause ocean tides", "a fast cat ran", "surf is a wave of water"],
    "q_cot": [
        "what does cause tides let us think step",
        "why is the cat fast let us think step",
        "how does a wave surf let us think step",
    ],
    "p_minus": ["the coast is blue", "the dog sat on the mat", "the red sun"],
}


def _features(model, columns):
    return [model.preprocess(TEXTS[name]) for name in columns]


def _embeddings(model, columns):
    return [model(model.preprocess(TEXTS[name]))["sentence_embedding"] for name in columns]


def test_modules_match_functions(tiny_model):
    model = tiny_model
    stage1 = ["anchor", "gold", "p_plus", "q_cot", "p_minus"]
    with torch.no_grad():
        emb = _embeddings(model, stage1)
        q, cand = emb[0], torch.stack(emb[1:], dim=1)
        labels = torch.tensor([1, 0, 1])
        mask = default_positive_mask(3, 4)
        mask[1, 1] = False
        for mode in ("paper", "per_positive", "gold_plus_synthetic"):
            loss = MultiPositiveDistillationLoss(model, mode=mode)(_features(model, stage1), labels)
            expected = multi_positive_distillation_loss(q, cand, mask, 0.05, mode=mode)
            torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            InBatchInfoNCELoss(model)(_features(model, ["anchor", "gold", "p_minus"]), None),
            in_batch_infonce_loss(q, cand[:, [0, 3]], 0.05),
            rtol=1e-5,
            atol=1e-5,
        )
        torch.testing.assert_close(
            PartialPlackettLuceLoss(model)(_features(model, ["anchor", "gold", "p_minus"]), None),
            partial_plackett_luce_loss(q, cand[:, [0, 3]], 0.05),
            rtol=1e-5,
            atol=1e-5,
        )
        torch.testing.assert_close(
            BradleyTerryLoss(model)(_features(model, ["anchor", "gold", "p_minus"]), None),
            bradley_terry_loss(q, cand[:, [0, 3]], 0.05),
            rtol=1e-5,
            atol=1e-5,
        )


def test_module_backward_reaches_model(tiny_model):
    model = tiny_model
    model.zero_grad()
    features = _features(model, ["anchor", "gold", "p_plus", "q_cot", "p_minus"])
    loss = MultiPositiveDistillationLoss(model)(features, None)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    model.zero_grad()


def test_cached_variant_matches_uncached(tiny_model):
    from synthir.dense.losses import CachedMultiPositiveDistillationLoss  # built lazily (PEP 562)

    model = tiny_model
    stage1 = ["anchor", "gold", "p_plus", "q_cot", "p_minus"]
    labels = torch.tensor([1, 0, 1])

    model.zero_grad()
    plain = MultiPositiveDistillationLoss(model)(_features(model, stage1), labels)
    plain.backward()
    plain_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.zero_grad()
    cached = CachedMultiPositiveDistillationLoss(model, mini_batch_size=2)(_features(model, stage1), labels)
    cached.backward()
    cached_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    torch.testing.assert_close(cached.detach(), plain.detach(), rtol=1e-5, atol=1e-6)
    assert plain_grads.keys() == cached_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(cached_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
