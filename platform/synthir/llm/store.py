"""The response store: every LLM answer, content-addressed, so no request is ever paid for twice.

Key = sha256 of (model, messages, sampling parameters). Each answer is one small JSON object under
``<root>/objects/<key[:2]>/<key>.json``, written atomically the moment it arrives: a crash loses at most
the requests in flight, and two runs writing the same key at once write the same content. Answers imported
from an OpenAI Batch output file are also bound to their ``custom_id`` (``<root>/ids/<custom_id>.json``), so
recorded answers replay even after a prompt file gains a comment (for the same model only).
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from synthir import storage


@dataclass(frozen=True)
class ChatRequest:
    """One chat-completion request, named by a ``custom_id`` (e.g. ``syntriever/cot/<query_id>``)."""

    custom_id: str
    model: str
    messages: tuple[tuple[str, str], ...]
    sampling: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def make(cls, custom_id: str, model: str, messages: list[dict], sampling: dict | None = None) -> "ChatRequest":
        """Build a request from OpenAI-style messages and sampling parameters (None values dropped)."""
        return cls(custom_id, model, tuple((m["role"], m["content"]) for m in messages),
                   tuple(sorted((k, v) for k, v in (sampling or {}).items() if v is not None)))

    @property
    def key(self) -> str:
        """The content address: sha256 of model, messages and sampling parameters."""
        canonical = json.dumps({"model": self.model, "messages": [list(m) for m in self.messages],
                                "sampling": dict(self.sampling)}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def body(self) -> dict:
        """The request body of an OpenAI chat completion."""
        return {"model": self.model, "messages": [{"role": r, "content": c} for r, c in self.messages], **dict(self.sampling)}


@dataclass
class Ledger:
    """Requests and tokens per model for one run, plus what came from the store."""

    sent: int = 0
    from_store: int = 0
    failed: int = 0
    tokens: dict[str, dict[str, int]] = field(default_factory=dict)

    def add_usage(self, model: str, usage: dict | None) -> None:
        """Count one answered request's usage (absent usage counts the request only)."""
        t = self.tokens.setdefault(model, {"requests": 0, "input_tokens": 0, "output_tokens": 0})
        t["requests"] += 1
        if usage:
            t["input_tokens"] += int(usage.get("prompt_tokens") or 0)
            t["output_tokens"] += int(usage.get("completion_tokens") or 0)


class ResponseStore:
    """Answers by content key (and by custom_id for imported batches), under a storage root."""

    def __init__(self, root: str, threads: int = 16):
        self.root = root
        self.threads = threads

    def _object_uri(self, key: str) -> str:
        return storage.join(self.root, "objects", key[:2], f"{key}.json")

    def _id_uri(self, custom_id: str) -> str:
        return storage.join(self.root, "ids", *[quote(p, safe="") for p in custom_id.split("/")]) + ".json"

    def put(self, request: ChatRequest, content: str, usage: dict | None = None, source: str = "engine",
            bind_custom_id: bool = False) -> None:
        """Store an answer for ``request`` (atomically); optionally bind its custom_id to it."""
        record = {"key": request.key, "custom_id": request.custom_id, "request": request.body(),
                  "content": content, "usage": usage, "source": source}
        storage.write_json(self._object_uri(request.key), record)
        if bind_custom_id:
            storage.write_json(self._id_uri(request.custom_id), {"key": request.key})

    def _read(self, uri: str) -> dict | None:
        return storage.read_json(uri) if storage.exists(uri) else None

    def get(self, request: ChatRequest) -> dict | None:
        """The stored answer for ``request``: by content key, else by an imported custom_id binding of the same model."""
        record = self._read(self._object_uri(request.key))
        if record is None:
            bound = self._read(self._id_uri(request.custom_id))
            if bound is not None:
                record = self._read(self._object_uri(bound["key"]))
                if record is not None and record["request"].get("model") != request.model:
                    return None  # another model's answer to the same task is not this model's answer
        return record

    def get_many(self, requests: list[ChatRequest]) -> list[dict | None]:
        """``get`` for many requests, in parallel (object stores are latency-bound)."""
        with ThreadPoolExecutor(self.threads) as pool:
            return list(pool.map(self.get, requests))
