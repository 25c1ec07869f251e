"""OpenAI Batch API files: export requests as Batch input JSONL, import Batch output JSONL into the store."""

from __future__ import annotations

import gzip
import json

from synthir import storage
from synthir.data.beir import DataError, iter_json_objects
from synthir.llm.store import ChatRequest, ResponseStore


def _json_lines(uri: str):
    for lineno, row in iter_json_objects(uri):
        if not row.get("custom_id"):
            raise DataError(uri, "missing or empty", lineno, "custom_id")
        yield lineno, row


def export_requests(requests: list[ChatRequest], uri: str) -> int:
    """Write ``requests`` as an OpenAI Batch input file (``.gz`` compresses); returns the line count."""
    text = "".join(json.dumps({"custom_id": r.custom_id, "method": "POST", "url": "/v1/chat/completions", "body": r.body()},
                              ensure_ascii=False) + "\n" for r in requests)
    data = text.encode("utf-8")
    storage.write_bytes(uri, gzip.compress(data, mtime=0) if uri.endswith(".gz") else data)
    return len(requests)


def read_requests(uri: str) -> dict[str, ChatRequest]:
    """Read a Batch input file into ``{custom_id: ChatRequest}``."""
    out = {}
    for lineno, row in _json_lines(uri):
        body = row.get("body")
        if not isinstance(body, dict) or "messages" not in body or "model" not in body:
            raise DataError(uri, "needs model and messages", lineno, "body")
        sampling = {k: v for k, v in body.items() if k not in ("model", "messages")}
        out[row["custom_id"]] = ChatRequest.make(row["custom_id"], body["model"], body["messages"], sampling)
    return out


def import_answers(requests_uri: str, answers_uri: str, store: ResponseStore) -> dict[str, int]:
    """Store every successful answer of a Batch output file, bound to its request by custom_id."""
    requests = read_requests(requests_uri)
    counts = {"imported": 0, "failed": 0}
    for lineno, row in _json_lines(answers_uri):
        request = requests.get(row["custom_id"])
        if request is None:
            raise DataError(answers_uri, f"custom_id {row['custom_id']!r} is not in {requests_uri}", lineno, "custom_id")
        response = row.get("response") or {}
        body = response.get("body") or {}
        if response.get("status_code") != 200 or row.get("error") or not body.get("choices"):
            counts["failed"] += 1
            continue
        content = body["choices"][0].get("message", {}).get("content")
        if not isinstance(content, str):
            raise DataError(answers_uri, "no message content", lineno, "response.body.choices[0].message.content")
        store.put(request, content, body.get("usage"), source=f"batch:{answers_uri}", bind_custom_id=True)
        counts["imported"] += 1
    return counts
