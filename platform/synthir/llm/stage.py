"""Engines as a Ray Data stage: an actor pool that answers the requests missing from the response store.

Each actor holds one engine (an ``http`` client, or a local ``hf`` model loaded once per actor) and, for each
batch of requests, sends only those whose answer the store lacks, writing every answer the moment it comes
back. Rows in: ``custom_id``, ``model``, ``messages`` and ``sampling`` (JSON strings). Rows out: ``custom_id``,
``sent`` (answered now rather than from the store) and ``error`` (empty when answered).
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field

from synthir.config import StrictModel
from synthir.llm.engines import HTTPEngineConfig, complete_http
from synthir.llm.hf_engine import HFEngineConfig
from synthir.llm.store import ChatRequest, Ledger, ResponseStore


class EngineStageConfig(StrictModel):
    """Which engine answers, and how many Ray actors run it."""

    kind: Literal["http", "hf"] = "http"
    num_actors: int = Field(1, ge=1)
    num_cpus_per_actor: float = Field(1.0, gt=0)
    num_gpus_per_actor: float = Field(0.0, ge=0)
    batch_size: int = Field(64, ge=1, description="requests handed to an actor at once")
    http: HTTPEngineConfig = HTTPEngineConfig()
    hf: HFEngineConfig = HFEngineConfig()


class _AnswerMissing:
    """Ray Data callable class: one engine per actor, store-aware."""

    def __init__(self, config: dict, store_root: str):
        self.config = EngineStageConfig.model_validate(config)
        self.store = ResponseStore(store_root)
        self.generator = None
        if self.config.kind == "hf":
            from synthir.llm.hf_engine import HFGenerator

            self.generator = HFGenerator(self.config.hf)

    def __call__(self, batch: dict) -> dict:
        requests = [ChatRequest.make(c, m, json.loads(msg), json.loads(s))
                    for c, m, msg, s in zip(batch["custom_id"], batch["model"], batch["messages"], batch["sampling"])]
        missing = [r for r, rec in zip(requests, self.store.get_many(requests)) if rec is None]
        errors: dict[str, str] = {}
        if missing and self.generator is not None:
            answers = self.generator.generate([[{"role": r, "content": c} for r, c in q.messages] for q in missing],
                                              [dict(q.sampling) for q in missing])
            for request, answer in zip(missing, answers):
                self.store.put(request, answer["content"], answer.get("usage"), source=f"hf:{self.config.hf.model}")
        elif missing:
            for line in complete_http(missing, self.store, self.config.http, Ledger()):
                custom_id, _, message = line.partition(": ")
                errors[custom_id] = message
        sent = {r.custom_id for r in missing}
        return {"custom_id": batch["custom_id"], "sent": [c in sent and c not in errors for c in batch["custom_id"]],
                "error": [errors.get(c, "") for c in batch["custom_id"]]}


def answer_on_ray(requests: list[ChatRequest], store: ResponseStore, config: EngineStageConfig) -> tuple[int, list[str]]:
    """Answer the requests missing from ``store`` on a Ray Data actor pool; returns (sent, errors)."""
    import ray.data

    rows = [{"custom_id": r.custom_id, "model": r.model, "messages": json.dumps([{"role": a, "content": b} for a, b in r.messages]),
             "sampling": json.dumps(dict(r.sampling))} for r in requests]
    ds = ray.data.from_items(rows).repartition(max(1, len(rows) // config.batch_size))
    out = ds.map_batches(
        _AnswerMissing,
        fn_constructor_kwargs={"config": config.model_dump(), "store_root": store.root},
        batch_size=config.batch_size,
        compute=ray.data.ActorPoolStrategy(size=config.num_actors),
        num_cpus=config.num_cpus_per_actor,
        num_gpus=config.num_gpus_per_actor,
    ).take_all()
    return sum(bool(r["sent"]) for r in out), [f"{r['custom_id']}: {r['error']}" for r in out if r["error"]]
