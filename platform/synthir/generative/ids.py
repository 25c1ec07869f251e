"""Document identifiers: semantic IDs (an LLM's keyword list) or atomic IDs (one new token per document).

A semantic ID is the document's keyword list, normalised (whitespace collapsed, optionally lower-cased, at
most ``max_keywords`` items) and joined by ``separator``. Two documents whose normalised lists are equal get
the same text; the second and later ones, in corpus order, get `` #2``, `` #3``... appended, so the mapping is
deterministic and one-to-one. An atomic ID is a token ``<doc:ID>`` added to the tokenizer (the model's
embeddings are resized to match); decoding it is a one-step classification.

``identifier_tokens`` is the one place that turns an identifier into the token ids the model is trained to
emit after a prompt and that the decoding trie holds, so both always agree.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field

from synthir.config import StrictModel

ATOMIC_FORMAT = "<doc:{}>"


class IdentifierConfig(StrictModel):
    """How documents are named for the decoder (paper: semantic IDs for the instruct model, atomic for the base)."""

    kind: Literal["semantic", "atomic"] = "semantic"
    max_keywords: int | None = Field(None, ge=1, description="keep the first N keywords of a list (None: all)")
    lowercase: bool = Field(True, description="lower-case keywords (case variants of one list collide)")
    separator: str = Field(", ", min_length=1, description="joins the keywords of one ID")


def normalise_keywords(keywords: list[str], config: IdentifierConfig) -> str:
    """One semantic ID text from a keyword list: cleaned, truncated to ``max_keywords``, joined."""
    items = [re.sub(r"\s+", " ", k).strip() for k in keywords]
    items = [k.lower() if config.lowercase else k for k in items if k]
    if config.max_keywords:
        items = items[: config.max_keywords]
    if not items:
        raise ValueError("an empty keyword list cannot name a document")
    return config.separator.join(items)


def semantic_ids(keywords: dict[str, list[str]], config: IdentifierConfig) -> dict[str, str]:
    """``{doc_id: unique ID text}`` in the order of ``keywords``; collisions get `` #2``, `` #3``... in that order."""
    taken: set[str] = set()
    out: dict[str, str] = {}
    for doc_id, words in keywords.items():
        base = normalise_keywords(words, config)
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base} #{n}"
        taken.add(name)
        out[doc_id] = name
    return out


def atomic_ids(doc_ids: list[str]) -> dict[str, str]:
    """``{doc_id: "<doc:doc_id>"}``: one new vocabulary token per document."""
    if len(set(doc_ids)) != len(doc_ids):
        raise ValueError("atomic IDs need distinct document ids")
    return {d: ATOMIC_FORMAT.format(d) for d in doc_ids}


def add_atomic_tokens(tokenizer: Any, identifiers: list[str]) -> int:
    """Add each atomic ID to the tokenizer as one token, in order; returns how many were new.

    The model's embeddings must then grow to ``len(tokenizer)`` (``synthir.generative.train`` does it).
    """
    return tokenizer.add_tokens(identifiers)


def identifier_tokens(tokenizer: Any, identifier: str) -> list[int]:
    """The token ids the model emits for ``identifier`` right after a prompt: the ID (after a space), then EOS.

    An atomic ID is its one added token; a semantic ID is tokenised with a leading space, as text after
    ``Document ID:`` is.
    """
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token: identifiers must end in one")
    atomic = tokenizer.get_added_vocab().get(identifier)
    ids = [atomic] if atomic is not None else tokenizer(" " + identifier, add_special_tokens=False)["input_ids"]
    return ids + [tokenizer.eos_token_id]
