"""Answering a list of chat requests: from the response store first, then from the configured engine.

``config`` is any synthesis config with the engine settings (``engine``, ``http``, ``hf``, ``vllm``, ``ray``,
``ray_actors``, ``storage``): ``http`` and ``hf`` answer what is missing now (on the driver, or on a Ray Data actor
pool), ``vllm`` through a ``ray.data.llm`` processor on the cluster's GPUs, any
other engine (``batch``, ``recorded``) exports the missing requests as an OpenAI Batch input file and stops.
"""

from __future__ import annotations

from typing import Any

from synthir import storage
from synthir.llm.batchfile import export_requests
from synthir.llm.engines import complete_http, complete_vllm
from synthir.llm.hf_engine import HFGenerator
from synthir.llm.stage import EngineStageConfig, answer_on_ray
from synthir.llm.store import ChatRequest, Ledger, ResponseStore
from synthir.runtime import init_ray


class MissingAnswers(RuntimeError):
    """Some requests have no answer yet (``batch`` engine): they were exported to a file."""

    def __init__(self, count: int, uri: str):
        self.count, self.uri = count, uri
        super().__init__(f"{count} requests have no answer yet; exported as an OpenAI Batch input file to {uri}. "
                         f"Run it, then: synthir synth import --requests {uri} --answers <output.jsonl>")


def _run_engine(missing: list[ChatRequest], store: ResponseStore, config: Any) -> list[str]:
    """Answer ``missing`` with the live engine into the store; returns errors that outlived retries."""
    if config.engine == "vllm":
        if config.vllm is None:
            raise ValueError("engine 'vllm' needs a vllm section (vllm.model at least)")
        init_ray(config.ray)
        return complete_vllm(missing, store, config.vllm)
    if config.ray_actors:
        init_ray(config.ray)
        stage = EngineStageConfig(kind=config.engine, num_actors=config.ray_actors, num_cpus_per_actor=config.ray_actor_cpus,
                                  http=config.http, hf=config.hf)
        return answer_on_ray(missing, store, stage)[1]
    if config.engine == "http":
        return complete_http(missing, store, config.http, Ledger())
    generator = HFGenerator(config.hf)
    answers = generator.generate([[{"role": r, "content": c} for r, c in q.messages] for q in missing], [dict(q.sampling) for q in missing])
    for request, answer in zip(missing, answers):
        store.put(request, answer["content"], answer.get("usage"), source=f"hf:{config.hf.model}")
    return []


def answer_requests(store: ResponseStore, requests: list[ChatRequest], config: Any, ledger: Ledger) -> list[str]:
    """Answers of ``requests`` in order: from the store, else from the live engine, else exported (MissingAnswers)."""
    records = store.get_many(requests)
    missing = [r for r, rec in zip(requests, records) if rec is None]
    ledger.from_store += len(requests) - len(missing)
    if missing and config.engine in ("http", "hf", "vllm"):
        errors = _run_engine(missing, store, config)
        if errors:
            raise RuntimeError(f"{len(errors)} requests failed after retries (answers so far are stored; rerun to "
                               f"resume): " + "; ".join(errors[:3]))
        answered = {r.key for r in missing}
        records = store.get_many(requests)
        for rec in records:
            if rec is not None and rec["key"] in answered:
                ledger.sent += 1
                ledger.add_usage(rec["request"]["model"], rec.get("usage"))
        missing = [r for r, rec in zip(requests, records) if rec is None]
    if missing:
        task = "-".join(requests[0].custom_id.split("/")[:2])
        uri = storage.join(config.storage, "synth", "batch", f"{task}-{len(missing)}.jsonl")
        export_requests(missing, uri)
        raise MissingAnswers(len(missing), uri)
    return [rec["content"] for rec in records]


