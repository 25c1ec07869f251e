"""Generative-retrieval data: identical texts, chunks, sentences, identifiers, and the SFT stream's labels."""

from __future__ import annotations

import pytest
import torch

from synthir.generative.corpus import chunk_text, collapse_identical, map_qrels, split_sentences, synthesis_context
from synthir.generative.ids import IdentifierConfig, add_atomic_tokens, atomic_ids, identifier_tokens, semantic_ids
from synthir.generative.sft_data import PROMPT, SFTDataConfig, build_examples, mix, render_prompt
from synthir.generative.train import DecoderTrainConfig, load_tokenizer, sft_args
from tests.genret_fixtures import tiny_decoder


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("bundled:smollm2-135m-instruct")


def test_identical_texts_collapse_onto_the_first_and_qrels_follow():
    canonical = collapse_identical(["d0", "d1", "d2", "d3"], ["a", "b", "a", "a "])
    assert canonical == {"d0": "d0", "d1": "d1", "d2": "d0", "d3": "d3"}  # byte-identical only
    assert map_qrels({"q": {"d2": 1, "d0": 2}, "r": {"d3": 1}}, canonical) == {"q": {"d0": 2}, "r": {"d3": 1}}


def test_chunks_have_at_most_n_tokens_and_cover_the_text(tokenizer):
    text = " ".join(f"word{i} is here." for i in range(200))
    chunks = chunk_text(text, tokenizer, 64)
    lengths = [len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in chunks]
    assert all(n <= 66 for n in lengths) and len(chunks) == -(-len(tokenizer(text, add_special_tokens=False)["input_ids"]) // 64)
    assert "".join(chunks).replace(" ", "") == text.replace(" ", "")
    assert len(chunk_text(text, tokenizer, 64, max_chunks=2)) == 2


def test_sentences_follow_the_recorded_rule():
    context = synthesis_context("One two three four five six seven eight. ( Short one . ) " * 3 + "x " * 400, 40)
    assert len(context.split()) == 40
    sentences = split_sentences(context, min_words=8, limit=8)
    assert sentences[0] == "One two three four five six seven eight."
    assert all(len(s.split()) >= 8 for s in sentences)
    assert split_sentences("Tiny. Also tiny.", 8, 8) == [] and split_sentences(context, 8, 0) == []


def test_semantic_id_collisions_resolve_deterministically_in_corpus_order():
    cfg = IdentifierConfig(max_keywords=2)
    keywords = {"d9": ["Tides", "Moon", "gravity"], "d1": ["tides", " moon "], "d5": ["Sun"], "d2": ["TIDES", "moon", "x"]}
    ids = semantic_ids(keywords, cfg)
    assert ids == {"d9": "tides, moon", "d1": "tides, moon #2", "d5": "sun", "d2": "tides, moon #3"}
    assert semantic_ids(dict(keywords), cfg) == ids  # same input, same names
    assert len(set(ids.values())) == len(ids)
    with pytest.raises(ValueError, match="empty keyword list"):
        semantic_ids({"d0": [" "]}, cfg)


def test_atomic_ids_are_one_token_then_eos(tmp_path, tokenizer):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_decoder(tmp_path / "m"))
    ids = atomic_ids(["d0", "d1", "d2"])
    before = len(tok)
    assert add_atomic_tokens(tok, list(ids.values())) == 3 and len(tok) == before + 3
    assert [tok.convert_tokens_to_ids(i) for i in ids.values()] == [before, before + 1, before + 2]
    assert [len(identifier_tokens(tok, i)) for i in ids.values()] == [2, 2, 2]
    assert identifier_tokens(tok, ids["d1"])[-1] == tok.eos_token_id
    assert len(identifier_tokens(tok, "tides, moon")) > 2


def test_interleaving_upsamples_context2id_and_concatenation_does_not():
    ctx = [{"kind": "context2id", "n": i} for i in range(2)]
    qs = [{"kind": "queries", "n": i} for i in range(6)]
    inter = mix(ctx, qs, SFTDataConfig())
    assert [e["kind"] for e in inter] == ["queries", "context2id"] * 6  # one Context2ID after each query
    assert sorted(e["n"] for e in inter if e["kind"] == "context2id") == [0, 0, 0, 1, 1, 1]
    sparse = mix(ctx, qs, SFTDataConfig(context_every=3))
    assert [e["kind"] for e in sparse].count("context2id") == 2
    concat = mix(ctx, qs, SFTDataConfig(mixing="concatenated"))
    assert [e["kind"] for e in concat] == ["context2id"] * 2 + ["queries"] * 6


def test_prompt_is_cut_to_fit_and_examples_end_in_the_identifier(tokenizer):
    long = "tides " * 500
    prompt = render_prompt(tokenizer, long, 40)
    assert prompt.startswith("Text: ") and prompt.endswith("\nDocument ID:")
    assert len(tokenizer(prompt)["input_ids"]) <= 40
    assert render_prompt(tokenizer, "short", 40) == PROMPT.format(text="short")
    examples = build_examples(tokenizer, [("d0", "the moon pulls the sea")], [("d0", "queries", "what moves tides?"),
                              ("d0", "constrained", "left-wing tides?")], {"d0": "tides, moon"},
                              SFTDataConfig(query_kinds=["queries"]))
    assert sorted(e["kind"] for e in examples) == ["context2id", "queries"]
    for e in examples:
        assert e["input_ids"][e["prompt_length"]:] == identifier_tokens(tokenizer, "tides, moon")


@pytest.mark.parametrize("packing", [False, True])
def test_sft_labels_cover_input_and_output_tokens(tmp_path, tokenizer, packing):
    """Wen et al. train on the whole sequence: every real token (prompt and ID) is a label, padding is not."""
    import datasets
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    folder = tiny_decoder(tmp_path / "m")
    examples = build_examples(tokenizer, [("d0", "the moon pulls the sea"), ("d1", "volcanoes erupt lava")],
                              [("d0", "queries", "what moves the tides?"), ("d1", "queries", "hot rock?")],
                              {"d0": "tides, moon", "d1": "volcano"}, SFTDataConfig())
    cfg = DecoderTrainConfig(max_steps=1, batch_size=4, max_length=48, packing=packing)
    ds = datasets.Dataset.from_list([{"input_ids": e["input_ids"]} for e in examples])
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(folder), args=sft_args(cfg, str(tmp_path / "o"), 0),
                         train_dataset=ds, processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    real = batch["attention_mask"].bool() if "attention_mask" in batch else torch.ones_like(batch["input_ids"], dtype=torch.bool)
    assert torch.equal(batch["labels"][real], batch["input_ids"][real])
    assert (batch["labels"][~real] == -100).all()
    if packing:  # wrapped blocks of max_length, filled in stream order
        stream = [t for e in examples for t in e["input_ids"]]
        assert batch["input_ids"].shape[1] == 48 and batch["input_ids"][0].tolist() == stream[:48]
    else:  # in stream order (sequential sampler): the first example is the stream's first, labels on its prompt too
        first = examples[0]["input_ids"]
        assert batch["input_ids"][0][: len(first)].tolist() == first
        assert batch["labels"][0][: examples[0]["prompt_length"]].tolist() == first[: examples[0]["prompt_length"]]


def test_the_bundled_gguf_decoder_can_be_fully_fine_tuned(tmp_path, tokenizer):
    """transformers marks a GGUF-loaded model quantized (its weights are dequantized); the Trainer must accept it."""
    import datasets
    from trl import SFTTrainer

    from synthir.generative.train import load_decoder

    model = load_decoder("bundled:smollm2-135m-instruct")
    assert not model.is_quantized and not hasattr(model.config, "quantization_config")
    SFTTrainer(model=model, args=sft_args(DecoderTrainConfig(max_steps=1), str(tmp_path / "o"), 0),
               train_dataset=datasets.Dataset.from_list([{"input_ids": [1, 2, 3]}]), processing_class=tokenizer)
