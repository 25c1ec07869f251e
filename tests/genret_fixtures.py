"""A tiny random decoder (Llama layout) with the real SmolLM2 tokenizer, for generative-retrieval unit tests."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from synthir.generative.train import BUNDLED_DECODER, load_tokenizer


def tiny_decoder(folder: Path, seed: int = 0) -> Path:
    """Save a 2-layer, 32-wide random LlamaForCausalLM and the bundled tokenizer to ``folder``; returns it."""
    tokenizer = load_tokenizer(BUNDLED_DECODER)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
