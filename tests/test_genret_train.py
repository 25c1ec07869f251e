"""Decoder SFT on Ray Train (tiny random Llama, real SmolLM2 tokenizer): 2 gloo workers, resume, retrieval."""

from __future__ import annotations

import json

import pytest

from synthir import storage
from synthir.generative.ids import IdentifierConfig, add_atomic_tokens, atomic_ids, identifier_tokens, semantic_ids
from synthir.generative.retrieve import DecodeConfig, GenerativeRetriever
from synthir.generative.sft_data import SFTDataConfig, build_examples
from synthir.generative.train import DecoderTrainConfig, load_tokenizer, train_decoder
from synthir.generative.trie import TokenTrie
from tests.genret_fixtures import tiny_decoder

DOCS = {"d0": "The moon's gravity pulls the oceans into tides.", "d1": "Volcanoes erupt lava from the mantle.",
        "d2": "Bees pollinate flowering plants.", "d3": "Glaciers carve valleys over millennia."}
QUERIES = [("d0", "queries", "what causes tides?"), ("d1", "queries", "where does lava come from?"),
           ("d2", "sentence", "who pollinates flowers?"), ("d3", "constrained", "how are valleys carved?")]


def _setup(kind: str):
    tokenizer = load_tokenizer("bundled:smollm2-135m-instruct")
    if kind == "atomic":
        identifiers = atomic_ids(list(DOCS))
        add_atomic_tokens(tokenizer, list(identifiers.values()))
    else:
        identifiers = semantic_ids({"d0": ["tides", "moon"], "d1": ["volcano", "lava"], "d2": ["bees"],
                                    "d3": ["glaciers", "valleys"]}, IdentifierConfig())
    trie = TokenTrie([identifier_tokens(tokenizer, identifiers[d]) for d in DOCS], list(DOCS), tokenizer.eos_token_id)
    examples = build_examples(tokenizer, list(DOCS.items()), QUERIES, identifiers, SFTDataConfig())
    return tokenizer, trie, examples


@pytest.mark.slow
def test_sft_runs_on_two_gloo_workers_and_retrieves_only_documents(ray_local, tmp_path):
    tokenizer, trie, examples = _setup("semantic")
    model = tiny_decoder(tmp_path / "base")
    cfg = DecoderTrainConfig(base_model=str(model), max_steps=2, batch_size=2, max_length=64, num_workers=2, lr=1e-3)
    out = str(tmp_path / "sft")
    summary = train_decoder(examples, tokenizer, trie, cfg, out)
    assert summary["world_size"] == 2 and summary["global_step"] == 2 and summary["examples"] == len(examples)
    log = [json.loads(x) for x in storage.read_text(storage.join(out, "train_log.jsonl")).splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2]
    retriever = GenerativeRetriever(storage.join(out, "model"))
    assert retriever.trie.to_json() == trie.to_json()  # the trie travels with the model
    ranked = retriever.search(["what causes tides?", "bees?", "lava"], DecodeConfig(num_beams=4, top_k=3, batch_size=2))
    for r in ranked:
        assert 1 <= len(r) <= 3 and {d for d, _ in r} <= set(DOCS) and len({d for d, _ in r}) == len(r)
        assert [s for _, s in r] == sorted((s for _, s in r), reverse=True)
    # the same ranking from a Ray Data pool of 2 model replicas
    from synthir.generative.retrieve import retrieve_on_ray

    queries = ["what causes tides?", "bees?", "lava", "valleys", "sea"]
    local = retriever.search(queries, DecodeConfig(num_beams=4, top_k=3, batch_size=2))
    pooled = retrieve_on_ray(storage.join(out, "model"), queries, DecodeConfig(num_beams=4, top_k=3, batch_size=2),
                             num_actors=2, cpus_per_actor=0.5)
    assert [[d for d, _ in r] for r in pooled] == [[d for d, _ in r] for r in local]
    assert all(abs(a[1] - b[1]) < 1e-4 for x, y in zip(pooled, local) for a, b in zip(x, y))
    # a finished run is not trained again
    assert train_decoder(examples, tokenizer, trie, cfg, out)["global_step"] == 2


@pytest.mark.slow
def test_killed_sft_run_resumes_from_its_last_checkpoint_with_atomic_ids(ray_local, tmp_path, monkeypatch):
    tokenizer, trie, examples = _setup("atomic")
    model = tiny_decoder(tmp_path / "base")
    cfg = DecoderTrainConfig(base_model=str(model), max_steps=4, batch_size=2, max_length=64, save_steps=2,
                             fail_at_step=3, max_failures=1, packing=False)
    monkeypatch.chdir(tmp_path)
    summary = train_decoder(examples, tokenizer, trie, cfg, "resume")
    # worker 0 died at step 3; Ray Train restarted it from the step-2 checkpoint and finished
    assert summary["resumed_from_step"] == 2 and summary["global_step"] == 4
    retriever = GenerativeRetriever(str(tmp_path / "resume" / "model"))
    assert retriever.model.get_input_embeddings().weight.shape[0] == len(tokenizer)  # one new row per document
    ranked = retriever.search(["what causes tides?"], DecodeConfig(num_beams=4, top_k=4))
    assert sorted(d for d, _ in ranked[0]) == sorted(DOCS)  # atomic: all 4 documents are 1-token beams


@pytest.mark.slow
def test_sft_with_deepspeed_zero3_trains_and_saves_a_usable_model(ray_local, tmp_path, monkeypatch):
    """The GPU config's ZeRO-3 path, on DeepSpeed's CPU accelerator (gloo): it trains, saves full weights, retrieves."""
    import torch
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path.parent / "torch-ext"))
    tokenizer, trie, examples = _setup("semantic")
    base = tiny_decoder(tmp_path / "base")
    ds = {"zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True},
          "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto", "train_batch_size": "auto"}
    cfg = DecoderTrainConfig(base_model=str(base), max_steps=2, batch_size=2, max_length=64, deepspeed=ds, lr=1e-2)
    summary = train_decoder(examples, tokenizer, trie, cfg, str(tmp_path / "zero3"))
    assert summary["deepspeed_zero_stage"] == 3 and summary["global_step"] == 2
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "zero3" / "model")
    before = AutoModelForCausalLM.from_pretrained(base)
    weights = dict(before.named_parameters())
    changed = [n for n, p in trained.named_parameters() if not torch.allclose(p, weights[n])]
    assert changed, "ZeRO-3 saved the untrained weights"
    ranked = GenerativeRetriever(str(tmp_path / "zero3" / "model")).search(["tides"], DecodeConfig(num_beams=4, top_k=4))
    assert {d for d, _ in ranked[0]} <= set(DOCS) and ranked[0]


@pytest.mark.slow
def test_lora_sft_publishes_a_merged_model(ray_local, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer, trie, examples = _setup("semantic")
    base = tiny_decoder(tmp_path / "base")
    cfg = DecoderTrainConfig(base_model=str(base), max_steps=2, batch_size=2, max_length=64, lr=1e-2,
                             lora={"r": 4, "alpha": 8, "dropout": 0.0})
    train_decoder(examples, tokenizer, trie, cfg, str(tmp_path / "lora"))
    folder = tmp_path / "lora" / "model"
    assert not (folder / "adapter_config.json").exists()  # merged: a plain model folder
    trained, before = AutoModelForCausalLM.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(base)
    weights = dict(before.named_parameters())
    changed = {n for n, p in trained.named_parameters() if not torch.allclose(p, weights[n])}
    assert changed and all(any(m in n for m in ("q_proj", "k_proj", "v_proj", "o_proj")) for n in changed)
    assert GenerativeRetriever(str(folder)).search(["tides"], DecodeConfig(num_beams=4, top_k=4))[0]
    with pytest.raises(ValueError, match="ZeRO-3"):
        DecoderTrainConfig(lora={}, deepspeed={"zero_optimization": {"stage": 3}})
