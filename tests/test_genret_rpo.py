"""RPO: mined negatives, DPO's tokenisation of identifiers, and TRL's loss against the paper's formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from synthir.generative.ids import identifier_tokens
from synthir.generative.mine import mined_pairs, random_pairs
from synthir.generative.rpo import RPOConfig, dpo_args, preference_rows
from synthir.generative.sft_data import render_prompt
from synthir.generative.train import load_tokenizer
from tests.genret_fixtures import tiny_decoder


def test_negatives_are_exactly_the_documents_ranked_above_the_positive():
    queries = [("q-a", "d3"), ("q-b", "d1"), ("q-c", "d9"), ("q-d", "d2")]
    ranked = [["d1", "d2", "d3", "d4"],  # positive third: d1, d2 above it
              ["d1", "d2"],  # positive first: skipped
              ["d5", "d6", "d7"],  # positive not retrieved: every candidate in the depth is above it
              ["d4", "d5", "d6", "d2"]]  # positive fourth, depth 2: only the top 2 count
    pairs, counts = mined_pairs(queries, ranked, depth=2)
    assert [(p["query"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("q-a", "d3", "d1"), ("q-a", "d3", "d2"), ("q-c", "d9", "d5"), ("q-c", "d9", "d6"),
        ("q-d", "d2", "d4"), ("q-d", "d2", "d5")]
    assert counts == {"queries": 4, "positive_first": 1, "used": 3, "pairs": 6}
    deep, _ = mined_pairs(queries, ranked, depth=10)
    assert [p["rejected"] for p in deep if p["query"] == "q-d"] == ["d4", "d5", "d6"]
    shuffled = random_pairs(pairs, [f"d{i}" for i in range(10)], seed=1)
    assert [p["chosen"] for p in shuffled] == [p["chosen"] for p in pairs]
    assert all(p["rejected"] != p["chosen"] for p in shuffled)
    assert shuffled == random_pairs(pairs, [f"d{i}" for i in range(10)], seed=1)


def _completion_logp(model, prompt_ids, completion_ids) -> float:
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, :-1]
    logp = F.log_softmax(logits.float(), -1)
    targets = ids[0, 1:]
    per_token = logp[torch.arange(len(targets)), targets][len(prompt_ids) - 1:]
    return float(per_token.sum()), len(completion_ids)


@pytest.mark.parametrize("alpha", [1.0, 0.25])
def test_rpo_loss_equals_the_formula_on_a_hand_computed_case(tmp_path, alpha):
    """L = -log σ(β(log π/π_ref (chosen) - log π/π_ref (rejected))) - α log π(chosen) / |chosen|, via TRL's DPOTrainer."""
    import datasets
    from transformers import AutoModelForCausalLM
    from trl import DPOTrainer

    tokenizer = load_tokenizer("bundled:smollm2-135m-instruct")
    policy = AutoModelForCausalLM.from_pretrained(tiny_decoder(tmp_path / "policy", seed=0))
    reference = AutoModelForCausalLM.from_pretrained(tiny_decoder(tmp_path / "ref", seed=1)).eval()
    ids = {"d0": "tides, moon", "d1": "volcano, lava flows"}
    rows = preference_rows([{"query": "what moves the sea?", "chosen": "d0", "rejected": "d1"}], ids, tokenizer, 288)
    cfg = RPOConfig(beta=0.5, alpha=alpha, batch_size=1, gradient_accumulation=1, max_steps=1)
    trainer = DPOTrainer(model=policy, ref_model=reference, args=dpo_args(cfg, str(tmp_path / "o"), 0),
                         train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer)
    row = trainer.train_dataset[0]
    prompt_ids = tokenizer(render_prompt(tokenizer, "what moves the sea?", 288))["input_ids"]
    # DPO trains exactly the tokens SFT trained and the trie holds
    assert row["prompt_ids"] == prompt_ids
    assert row["chosen_ids"] == identifier_tokens(tokenizer, ids["d0"])
    assert row["rejected_ids"] == identifier_tokens(tokenizer, ids["d1"])

    batch = next(iter(trainer.get_train_dataloader()))
    policy.eval()  # no dropout, so the trainer's forward is the one computed below
    with torch.no_grad():
        loss = float(trainer.compute_loss(policy, batch))
    pc, n_chosen = _completion_logp(policy, prompt_ids, row["chosen_ids"])
    pr, _ = _completion_logp(policy, prompt_ids, row["rejected_ids"])
    rc, _ = _completion_logp(reference, prompt_ids, row["chosen_ids"])
    rr, _ = _completion_logp(reference, prompt_ids, row["rejected_ids"])
    margin = 0.5 * ((pc - rc) - (pr - rr))
    expected = -math.log(1 / (1 + math.exp(-margin))) + alpha * (-pc / n_chosen)
    assert abs(margin) > 1e-3  # policy and reference differ, so the DPO term is not the trivial log 2
    assert loss == pytest.approx(expected, rel=1e-4, abs=1e-5)
