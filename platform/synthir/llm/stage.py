"""Engines as a Ray Data stage: an actor pool that answers the requests missing from the response store.

Each actor holds one engine (an ``http`` client, or a local ``hf`` model loaded once per actor) and, for each
batch of requests, sends only those whose answer the store lacks, writing every answer the moment it comes
back. Rows in: ``custom_id``, ``model``, ``messages`` and ``sampling`` (JSON strings). Rows out: ``custom_id``,
``sent`` (answered now rather than from the store) and ``error`` (empty when answered).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Literal

from pydantic import Field

from synthir.config import StrictModel
from synthir.llm.engines import HTTPEngine, HTTPEngineConfig
from synthir.llm.hf_engine import HFEngineConfig
from synthir.llm.store import ChatRequest, Ledger, ResponseStore


# Ray Data tasks (each one batch here: blocks are batch-sized) one http actor runs at once on its event loop, all
# behind its one concurrency gate.
HTTP_BATCHES_PER_ACTOR = 4


class EngineStageConfig(StrictModel):
    """Which engine answers, and how many Ray actors run it (``http.concurrency`` is per actor)."""

    kind: Literal["http", "hf"] = "http"
    num_actors: int = Field(1, ge=1, description="actors kept up (the pool's min_size)")
    max_actors: int | None = Field(None, ge=1, description="autoscale up to this many actors; None: num_actors")
    num_cpus_per_actor: float = Field(1.0, gt=0)
    num_gpus_per_actor: float = Field(0.0, ge=0)
    batch_size: int = Field(64, ge=1, description="requests handed to an actor at once")
    http: HTTPEngineConfig = HTTPEngineConfig()
    hf: HFEngineConfig = HFEngineConfig()


    def pool(self):
        """The Ray Data actor pool: num_actors up to max_actors, several concurrent batches per http actor."""
        import ray.data

        calls = HTTP_BATCHES_PER_ACTOR if self.kind == "http" else None
        return ray.data.ActorPoolStrategy(min_size=self.num_actors, max_size=max(self.num_actors, self.max_actors or 0),
                                          max_concurrent_calls_per_actor=calls)


def _requests(batch: dict) -> list[ChatRequest]:
    return [ChatRequest.make(c, m, json.loads(msg), json.loads(s))
            for c, m, msg, s in zip(batch["custom_id"], batch["model"], batch["messages"], batch["sampling"])]


def _result(batch: dict, missing: list[ChatRequest], errors: dict[str, str]) -> dict:
    sent = {r.custom_id for r in missing}
    return {"custom_id": batch["custom_id"], "sent": [c in sent and c not in errors for c in batch["custom_id"]],
            "error": [errors.get(c, "") for c in batch["custom_id"]]}


class _AnswerMissingHTTP:
    """Ray Data async callable class: one ``HTTPEngine`` per actor, kept across batches, store-aware.

    Async, so Ray Data runs several batches of one actor at once on the actor's event loop: they share the
    engine's connections and its ``concurrency`` gate, and a batch's last, half-empty wave overlaps the next
    batch instead of leaving slots idle (and no batch pays for a new client and new connections).
    """

    def __init__(self, config: EngineStageConfig, store_root: str):
        self.config = config
        self.store = ResponseStore(store_root)
        self.engine: HTTPEngine | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def answer_batch(self, batch: dict) -> tuple[list, list, dict[str, str], dict[str, str]]:
        """Look the batch up in the store, answer what it lacks: (requests, stored records, answers by key, errors by custom_id)."""
        if self.engine is None:  # created on the actor's event loop, where every batch runs
            self.engine, self.loop = HTTPEngine(self.config.http), asyncio.get_running_loop()
        requests = _requests(batch)
        records = await asyncio.to_thread(self.store.get_many, requests)
        missing = [r for r, rec in zip(requests, records) if rec is None]
        answers: dict[str, str] = {}
        errors: dict[str, str] = {}
        for line in await self.engine.answer(missing, self.store, Ledger(), answers):
            custom_id, _, message = line.partition(": ")
            errors[custom_id] = message
        return requests, records, answers, errors

    async def __call__(self, batch: dict) -> dict:
        requests, records, _, errors = await self.answer_batch(batch)
        return _result(batch, [r for r, rec in zip(requests, records) if rec is None], errors)

    def __del__(self):
        # Ray Data deletes the instance when it retires the actor: close the connections on the loop that owns them
        # (the loop runs in its own thread and is still running then). Nothing to wait for at interpreter exit.
        engine, loop = getattr(self, "engine", None), getattr(self, "loop", None)
        if engine is None or loop is None or not loop.is_running() or sys.is_finalizing():
            return
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:  # no loop runs in this thread
            on_loop = False
        if on_loop:  # waiting here would block the very loop that must run the close
            loop.create_task(engine.aclose())
        else:
            asyncio.run_coroutine_threadsafe(engine.aclose(), loop).result(timeout=10)


class _AnswerMissingHF:
    """Ray Data callable class: one local model per actor (loaded once), store-aware."""

    def __init__(self, config: EngineStageConfig, store_root: str):
        from synthir.llm.hf_engine import HFGenerator

        self.config = config
        self.store = ResponseStore(store_root)
        self.generator = HFGenerator(self.config.hf)

    def __call__(self, batch: dict) -> dict:
        requests = _requests(batch)
        missing = [r for r, rec in zip(requests, self.store.get_many(requests)) if rec is None]
        if missing:
            answers = self.generator.generate([[{"role": r, "content": c} for r, c in q.messages] for q in missing],
                                              [dict(q.sampling) for q in missing])
            for request, answer in zip(missing, answers):
                self.store.put(request, answer["content"], answer.get("usage"), source=f"hf:{self.config.hf.model}")
        return _result(batch, missing, {})


def answer_on_ray(requests: list[ChatRequest], store: ResponseStore, config: EngineStageConfig) -> tuple[int, list[str]]:
    """Answer the requests missing from ``store`` on a Ray Data actor pool; returns (sent, errors)."""
    import ray.data

    rows = [{"custom_id": r.custom_id, "model": r.model, "messages": json.dumps([{"role": a, "content": b} for a, b in r.messages]),
             "sampling": json.dumps(dict(r.sampling))} for r in requests]
    if config.kind == "http":
        # A batch at least as big as the gate, and several batches running per actor, keep the gate full.
        batch_size, fn = max(config.batch_size, config.http.concurrency), _AnswerMissingHTTP
    else:
        batch_size, fn = config.batch_size, _AnswerMissingHF
    # batch-sized blocks made on the driver: no repartition task, which would need a CPU the actors may all hold
    ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // batch_size))
    out = ds.map_batches(
        fn,
        # the config object itself, not its dump: the dump leaves out execution-only fields such as http.transport
        fn_constructor_kwargs={"config": config, "store_root": store.root},
        batch_size=batch_size,
        compute=config.pool(),
        num_cpus=config.num_cpus_per_actor,
        num_gpus=config.num_gpus_per_actor,
    ).take_all()
    return sum(bool(r["sent"]) for r in out), [f"{r['custom_id']}: {r['error']}" for r in out if r["error"]]
