"""The identifier trie: beam search under TrieLogitsProcessor only ever emits identifiers of the trie."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList

from synthir.generative.trie import TokenTrie, TrieLogitsProcessor


def _tiny_model(vocab: int, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


@st.composite
def tries(draw):
    """A random vocabulary (size, EOS, PAD) and 2-12 distinct identifiers of 1-5 tokens, some sharing prefixes."""
    vocab = draw(st.integers(6, 40))
    eos, pad = draw(st.lists(st.integers(0, vocab - 1), min_size=2, max_size=2, unique=True))
    body = st.lists(st.sampled_from([t for t in range(vocab) if t not in (eos, pad)]), min_size=1, max_size=5)
    bodies = draw(st.lists(body, min_size=2, max_size=12, unique_by=tuple))
    return vocab, eos, pad, [b + [eos] for b in bodies]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tries(), st.integers(0, 10_000), st.integers(1, 3))
def test_beam_search_under_the_trie_emits_only_identifiers(spec, seed, batch):
    vocab, eos, pad, sequences = spec
    names = [f"id{i}" for i in range(len(sequences))]
    trie = TokenTrie(sequences, names, eos)
    model = _tiny_model(vocab, seed)
    beams = min(4, len(sequences))
    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, vocab, (batch, 3), generator=gen)
    out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), num_beams=beams,
                         num_return_sequences=beams, do_sample=False, max_new_tokens=6, eos_token_id=eos,
                         pad_token_id=pad, logits_processor=LogitsProcessorList([TrieLogitsProcessor(trie, 3, pad)]),
                         output_scores=True, return_dict_in_generate=True)
    valid = {tuple(s) for s in sequences}
    for row, score in zip(out.sequences[:, 3:].tolist(), out.sequences_scores.tolist()):
        assert score > float("-inf")
        assert eos in row, f"a beam ended without EOS: {row}"
        assert tuple(row[: row.index(eos) + 1]) in valid
        assert trie.identifier(row) in names
    # each query's beams are distinct identifiers
    per_query = out.sequences[:, 3:].view(batch, beams, -1).tolist()
    for rows in per_query:
        assert len({trie.identifier(r) for r in rows}) == beams


def test_processor_masks_to_children_and_pads_finished_beams():
    trie = TokenTrie([[5, 6, 1], [5, 7, 1], [8, 1]], ["a", "b", "c"], eos_token_id=1)
    proc = TrieLogitsProcessor(trie, prompt_length=2, pad_token_id=0)
    input_ids = torch.tensor([[9, 9], [9, 9]])
    out = proc(input_ids, torch.zeros(2, 10))
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == [5, 8]
    step = torch.tensor([[9, 9, 5], [9, 9, 8], [9, 9, 5]])
    out = proc(step, torch.zeros(3, 10))
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == [6, 7]
    assert torch.isfinite(out[1]).nonzero().flatten().tolist() == [1]
    done = proc(torch.tensor([[9, 9, 8, 1]]), torch.zeros(1, 10))
    assert torch.isfinite(done[0]).nonzero().flatten().tolist() == [0]  # only padding after EOS


def test_trie_rejects_ambiguous_or_unterminated_identifiers(tmp_path):
    with pytest.raises(ValueError, match="end in EOS"):
        TokenTrie([[5, 6]], ["a"], eos_token_id=1)
    with pytest.raises(ValueError, match="same tokens"):
        TokenTrie([[5, 1], [5, 1]], ["a", "b"], eos_token_id=1)
    trie = TokenTrie([[5, 6, 1], [5, 1]], ["long", "short"], eos_token_id=1)
    trie.save(str(tmp_path))
    again = TokenTrie.load(str(tmp_path))
    assert again.allowed([5]) == [1, 6] and again.identifier([5, 1, 0, 0]) == "short"
    with pytest.raises(FileNotFoundError, match="no identifier trie"):
        TokenTrie.load(str(tmp_path / "elsewhere"))
