"""SFT examples for generative retrieval: Context2ID and Query2ID, interleaved or concatenated, as token ids.

Every example is one prompt and the identifier it must produce: ``PROMPT`` around a corpus chunk (Context2ID)
or a synthetic query (Query2ID), then ``identifier_tokens`` (the ID, then EOS). The whole sequence is the
training target: Wen et al. 2025 put the loss on input AND output, L = -sum log P(q_i|q_<i) - sum log P(d'_i|d'_<i, q),
so the labels are the input ids themselves (``completion_only_loss=False`` in TRL).

Mixing (the paper's ablation): ``interleaved`` alternates one Query2ID example and one Context2ID example,
cycling through the Context2ID examples (so they are upsampled to one per query, or one per
``context_every`` queries); ``concatenated`` is every Context2ID example once, then every Query2ID example
once. Each kind is shuffled (seeded) first, and the trainer reads the stream in order, so the order is the
mixing. Prompts and identifiers are tokenised exactly as retrieval and the RPO stage tokenise them
(``render_prompt``), so the model sees the same context at inference as in training.
"""

from __future__ import annotations

import random
from typing import Any, Literal

from pydantic import Field

from synthir.config import StrictModel
from synthir.generative.ids import identifier_tokens

PROMPT = "Text: {text}\nDocument ID:"
QueryKind = Literal["queries", "sentence", "constrained"]


class SFTDataConfig(StrictModel):
    """What the SFT stream holds and in which order (paper: interleaved Context2ID + all Query2ID kinds)."""

    mixing: Literal["interleaved", "concatenated"] = "interleaved"
    context_every: int = Field(1, ge=1, description="interleaved: one Context2ID example after every N Query2ID "
                               "examples (paper 1; larger N shortens an epoch)")
    context2id: bool = Field(True, description="include Context2ID examples (the paper's ablation drops them)")
    query_kinds: list[QueryKind] = Field(default_factory=lambda: ["queries", "sentence", "constrained"],
                                         description="which synthetic queries become Query2ID examples")
    max_prompt_tokens: int = Field(288, ge=8, description="prompt tokens kept (a 256-token chunk plus the template)")
    seed: int = 0


def render_prompt(tokenizer: Any, text: str, max_prompt_tokens: int) -> str:
    """``PROMPT`` around ``text``, the text cut (by tokens) so the tokenised prompt fits ``max_prompt_tokens``."""
    prompt = PROMPT.format(text=text)
    over = len(tokenizer(prompt)["input_ids"]) - max_prompt_tokens
    if over > 0:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        text = tokenizer.decode(ids[: max(1, len(ids) - over)], skip_special_tokens=True)
        prompt = PROMPT.format(text=text)
    return prompt


def example(tokenizer: Any, text: str, identifier: str, kind: str, max_prompt_tokens: int) -> dict:
    """One training example: ``input_ids`` (prompt then identifier tokens), ``prompt_length`` and ``kind``."""
    prompt_ids = tokenizer(render_prompt(tokenizer, text, max_prompt_tokens))["input_ids"]
    return {"input_ids": prompt_ids + identifier_tokens(tokenizer, identifier), "prompt_length": len(prompt_ids),
            "kind": kind}


def mix(context: list[dict], queries: list[dict], config: SFTDataConfig) -> list[dict]:
    """The training stream: each kind shuffled with ``config.seed``, then interleaved or concatenated."""
    rng = random.Random(config.seed)
    context, queries = list(context), list(queries)
    rng.shuffle(context)
    rng.shuffle(queries)
    if config.mixing == "concatenated" or not context or not queries:
        return context + queries
    out, c = [], 0
    for i, q in enumerate(queries, 1):
        out.append(q)
        if i % config.context_every == 0:
            out.append(context[c % len(context)])
            c += 1
    return out


def build_examples(tokenizer: Any, chunks: list[tuple[str, str]], queries: list[tuple[str, str, str]],
                   identifiers: dict[str, str], config: SFTDataConfig) -> list[dict]:
    """The SFT stream from ``chunks`` [(doc_id, text)] and ``queries`` [(doc_id, kind, query)]."""
    context = [example(tokenizer, t, identifiers[d], "context2id", config.max_prompt_tokens)
               for d, t in chunks] if config.context2id else []
    kinds = set(config.query_kinds)
    query_examples = [example(tokenizer, q, identifiers[d], kind, config.max_prompt_tokens)
                      for d, kind, q in queries if kind in kinds]
    if not context and not query_examples:
        raise ValueError("no SFT examples: Context2ID is off and no query kind has queries")
    return mix(context, query_examples, config)
