"""The identifier trie and the LogitsProcessor that confines beam search to it.

``TokenTrie`` holds the exact token sequences of every identifier (``synthir.generative.ids.identifier_tokens``:
the tokens after the prompt, ending in EOS); a path from the root that ends in EOS is one identifier. Children
are stored flat (CSR: ``offsets`` and ``tokens``), so ``TrieLogitsProcessor`` masks a whole batch of beams
with a handful of tensor ops per decoding step: gather each beam's allowed tokens, scatter 0 into a ``-inf``
mask, add. Only the lookup of each beam's trie node is a dict access per beam (memoised by prefix, so it costs
one step per new token), since beam search reorders beams between steps.

transformers has ``prefix_allowed_tokens_fn``, but it calls a Python function per beam and builds the mask
row by row; constrained generation's ``Constraint`` classes were removed from transformers. A flat trie and a
vectorised processor is the part no well-kept library provides, so it is written here.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from transformers import LogitsProcessor

from synthir import storage

TRIE_FILE = "genret_trie.json"


class TokenTrie:
    """A prefix tree over token sequences (each ending in EOS), with flat child arrays for vectorised masking."""

    def __init__(self, sequences: list[list[int]], identifiers: list[str], eos_token_id: int):
        """Build the trie; ``identifiers[i]`` names ``sequences[i]``, which must end in ``eos_token_id``."""
        if len(sequences) != len(identifiers):
            raise ValueError(f"{len(sequences)} token sequences for {len(identifiers)} identifiers")
        self.eos_token_id = eos_token_id
        self.sequences = [list(s) for s in sequences]
        self.identifiers = list(identifiers)
        children: list[dict[int, int]] = [{}]
        self.leaf_identifier: dict[int, str] = {}
        for seq, name in zip(self.sequences, self.identifiers):
            if not seq or seq[-1] != eos_token_id or eos_token_id in seq[:-1]:
                raise ValueError(f"identifier {name!r}: its tokens must end in EOS ({eos_token_id}) exactly once: {seq}")
            node = 0
            for token in seq:
                nxt = children[node].get(token)
                if nxt is None:
                    nxt = children[node][token] = len(children)
                    children.append({})
                node = nxt
            if node in self.leaf_identifier:
                raise ValueError(f"identifiers {self.leaf_identifier[node]!r} and {name!r} have the same tokens")
            self.leaf_identifier[node] = name
        self.children = children
        counts = torch.tensor([len(c) for c in children], dtype=torch.long)
        self.offsets = torch.zeros(len(children) + 1, dtype=torch.long)
        self.offsets[1:] = torch.cumsum(counts, 0)
        self.tokens = torch.tensor([t for c in children for t in sorted(c)], dtype=torch.long)

    def __len__(self) -> int:
        """The number of identifiers."""
        return len(self.identifiers)

    def node(self, prefix: list[int] | tuple[int, ...]) -> int | None:
        """The node reached by ``prefix`` from the root, or None when it leaves the trie."""
        node = 0
        for token in prefix:
            node = self.children[node].get(token)
            if node is None:
                return None
        return node

    def allowed(self, prefix: list[int] | tuple[int, ...]) -> list[int]:
        """The tokens that may follow ``prefix`` (empty after a complete identifier or off the trie)."""
        node = self.node(prefix)
        return [] if node is None else sorted(self.children[node])

    def identifier(self, tokens: list[int]) -> str | None:
        """The identifier spelled by ``tokens`` (trailing pads after EOS ignored), or None if it is not one."""
        if self.eos_token_id in tokens:
            tokens = tokens[: tokens.index(self.eos_token_id) + 1]
        node = self.node(tokens)
        return None if node is None else self.leaf_identifier.get(node)

    def to_json(self) -> dict[str, Any]:
        """The trie as JSON data (its sequences and names rebuild it exactly)."""
        return {"eos_token_id": self.eos_token_id, "identifiers": self.identifiers, "sequences": self.sequences}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TokenTrie":
        """Rebuild a trie saved with ``to_json``."""
        return cls(data["sequences"], data["identifiers"], data["eos_token_id"])

    def save(self, model_dir: str) -> str:
        """Write the trie beside a model (``<model_dir>/genret_trie.json``); returns its URI."""
        uri = storage.join(model_dir, TRIE_FILE)
        storage.write_text(uri, json.dumps(self.to_json()))
        return uri

    @classmethod
    def load(cls, model_dir: str) -> "TokenTrie":
        """Read the trie saved beside a model."""
        uri = storage.join(model_dir, TRIE_FILE)
        if not storage.exists(uri):
            raise FileNotFoundError(f"{uri}: no identifier trie beside this model (is it a synthir genret model?)")
        return cls.from_json(json.loads(storage.read_text(uri)))


class TrieLogitsProcessor(LogitsProcessor):
    """Sets every token a beam may not emit next to ``-inf``: only identifier prefixes, then EOS, survive.

    ``prompt_length`` is the (left-padded) prompt width: tokens after it are the beam's identifier prefix. A beam
    that has finished its identifier, or (impossible under this processor) left the trie, may only emit
    ``pad_token_id``, so a batch whose other beams are still decoding never sees an all ``-inf`` row.

    Example::

        trie = TokenTrie([identifier_tokens(tok, i) for i in ids], ids, tok.eos_token_id)
        out = model.generate(**batch, num_beams=10, num_return_sequences=10,
                             logits_processor=LogitsProcessorList([TrieLogitsProcessor(trie, batch["input_ids"].shape[1], tok.pad_token_id)]))
    """

    def __init__(self, trie: TokenTrie, prompt_length: int, pad_token_id: int | None = None):
        self.trie = trie
        self.prompt_length = prompt_length
        self.pad_token_id = trie.eos_token_id if pad_token_id is None else pad_token_id
        self._nodes: dict[tuple[int, ...], int] = {(): 0}

    def _node(self, prefix: tuple[int, ...]) -> int:
        node = self._nodes.get(prefix)
        if node is None:
            parent = self._node(prefix[:-1])
            node = self.trie.children[parent].get(prefix[-1], -1) if parent >= 0 else -1
            self._nodes[prefix] = node
        return node

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Mask ``scores`` (rows = beams) to the children of each beam's trie node."""
        nodes = torch.tensor([self._node(tuple(row)) for row in input_ids[:, self.prompt_length:].tolist()],
                             dtype=torch.long)
        live = nodes >= 0
        safe = nodes.clamp(min=0)
        starts, ends = self.trie.offsets[safe], self.trie.offsets[safe + 1]
        counts = torch.where(live, ends - starts, torch.zeros_like(starts))
        rows = torch.repeat_interleave(torch.arange(len(nodes)), counts)
        first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        positions = torch.arange(int(counts.sum())) - first + torch.repeat_interleave(starts, counts)
        mask = torch.full_like(scores, float("-inf"))
        mask[rows.to(scores.device), self.trie.tokens[positions].to(scores.device)] = 0.0
        dead = (counts == 0).to(scores.device)  # finished (after EOS) or off the trie: only padding may follow
        mask[dead, self.pad_token_id] = 0.0
        return scores + mask
