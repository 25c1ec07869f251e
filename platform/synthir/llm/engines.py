"""LLM engines behind one interface: answer the requests the response store does not have yet.

* ``http``: any OpenAI-compatible chat endpoint (OpenAI, a vLLM server, ``synthir serve-llm``) through the
  official ``openai`` async client, which retries 429/5xx/timeouts with exponential backoff and honours
  ``retry-after``. A semaphore keeps ``concurrency`` requests in flight; every answer is written to the
  store the moment it arrives, so a killed run loses at most the requests in flight.
* ``vllm``: ``ray.data.llm`` with ``vLLMEngineProcessorConfig`` on GPU nodes (imported lazily; its config is
  validated without vllm installed).

``recorded`` and ``batch`` (OpenAI Batch files) need no engine: see ``synthir.synth.syntriever``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Literal

from pydantic import Field

from synthir.config import StrictModel, execution_only
from synthir.llm.store import ChatRequest, Ledger, ResponseStore

log = logging.getLogger(__name__)


class HTTPEngineConfig(StrictModel):
    """An OpenAI-compatible endpoint. The API key is read from the environment variable ``api_key_env``."""

    # Where and how requests travel changes no answer (the store keys answers by model, messages and sampling), so
    # every field here is execution-only: changing the endpoint or its concurrency reuses every downstream output.
    base_url: str = execution_only("http://127.0.0.1:8000/v1")
    api_key_env: str = execution_only("OPENAI_API_KEY")
    concurrency: int = execution_only(16, ge=1, description="requests in flight at once")
    max_retries: int = execution_only(6, ge=0, description="retries on 429, 5xx, timeouts and connection errors")
    timeout_s: float = execution_only(120.0, gt=0, description="per-request timeout")
    # exclude=True: how requests travel changes no answer, so it stays out of dumps and thus out of the cache keys
    # of the pipeline steps that hash this config (adding it must not make existing stage-1 models look stale)
    transport: Literal["aiohttp", "httpx"] = Field(
        "aiohttp", exclude=True, description="the openai client's HTTP transport: aiohttp (openai's DefaultAioHttpClient, "
        "about 40% less client CPU per request, see docs/benchmarks.md) or the SDK's default httpx pool")


class VLLMEngineConfig(StrictModel):
    """vLLM through ``ray.data.llm`` (GPU only)."""

    model: str
    tensor_parallel_size: int = execution_only(1, ge=1)
    pipeline_parallel_size: int = execution_only(1, ge=1)
    max_model_len: int = Field(4096, ge=128)
    batch_size: int = execution_only(64, ge=1)
    concurrency: int | tuple[int, int] = execution_only(1, description="engine replicas, or (min, max) to autoscale")
    accelerator_type: str | None = execution_only(None)
    engine_kwargs: dict = Field(default_factory=dict)


def build_vllm_processor(config: VLLMEngineConfig, keep: tuple[str, ...] = ()):
    """A ``ray.data.llm`` processor mapping rows with ``messages``/``sampling`` to rows with ``content`` (and ``keep``)."""
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    engine_kwargs = {"tensor_parallel_size": config.tensor_parallel_size, "pipeline_parallel_size": config.pipeline_parallel_size,
                     "max_model_len": config.max_model_len, **config.engine_kwargs}
    processor_config = vLLMEngineProcessorConfig(
        model_source=config.model, engine_kwargs=engine_kwargs, batch_size=config.batch_size,
        concurrency=config.concurrency, accelerator_type=config.accelerator_type,
    )
    return build_processor(
        processor_config,
        preprocess=lambda row: {"custom_id": row["custom_id"], "messages": row["messages"], "sampling_params": row["sampling"],
                                **{k: row[k] for k in keep}},
        postprocess=lambda row: {"custom_id": row["custom_id"], "content": row["generated_text"], **{k: row[k] for k in keep},
                                 "usage": {"prompt_tokens": row.get("num_input_tokens", 0), "completion_tokens": row.get("num_generated_tokens", 0)}},
    )


def complete_vllm(requests: list[ChatRequest], store: ResponseStore, config: VLLMEngineConfig, processor=None) -> list[str]:
    """Answer ``requests`` with vLLM on Ray Data, storing each answer as it streams back; returns requests left unanswered."""
    import ray.data

    by_id = {r.custom_id: r for r in requests}
    rows = [{"custom_id": r.custom_id, "messages": [{"role": a, "content": b} for a, b in r.messages],
             "sampling": dict(r.sampling)} for r in requests]
    processor = processor or build_vllm_processor(config)
    for row in processor(ray.data.from_items(rows)).iter_rows():
        request = by_id.pop(row["custom_id"])
        usage = {k: int(v or 0) for k, v in (row.get("usage") or {}).items()}
        store.put(request, row["content"] or "", usage, source=f"vllm:{config.model}")
    return [f"{c}: no answer from vLLM" for c in by_id]


class HTTPEngine:
    """One ``openai`` async client and one concurrency gate, shared by every ``answer`` call on an event loop.

    ``complete_http`` uses one for a single call; a Ray Data actor keeps one for its lifetime, so its concurrent
    batches share the connections and the ``concurrency`` limit. Create it inside the event loop that uses it.
    """

    def __init__(self, config: HTTPEngineConfig):
        import openai

        self.config = config
        # One process sends hundreds of requests/s, so client CPU per request bounds throughput: the SDK's aiohttp
        # transport (its `aiohttp` extra) costs less than its default httpx pool; retries and timeouts are the SDK's either way.
        http_client = openai.DefaultAioHttpClient() if config.transport == "aiohttp" else None
        self.client = openai.AsyncOpenAI(base_url=config.base_url, api_key=os.environ.get(config.api_key_env) or "EMPTY",
                                         max_retries=config.max_retries, timeout=config.timeout_s, http_client=http_client)
        self.gate = asyncio.Semaphore(config.concurrency)

    async def _one(self, request: ChatRequest, store: ResponseStore, ledger: Ledger, errors: list[str],
                   answers: dict[str, str] | None) -> None:
        import openai
        from openai.types.chat import ChatCompletion

        async with self.gate:  # only the HTTP call holds a concurrency slot; the durable write happens outside it
            try:
                # The wire-format body as is (openai's documented route for custom requests): sampling keys that
                # only some servers know (vLLM's top_k, ...) pass through, and the per-request transform is skipped.
                response = await self.client.post("/chat/completions", body=request.body(), cast_to=ChatCompletion)
            except openai.OpenAIError as e:
                ledger.failed += 1
                errors.append(f"{request.custom_id}: {type(e).__name__}: {e}")
                return
        ledger.sent += 1
        usage = response.usage.model_dump() if response.usage else None
        ledger.add_usage(request.model, usage)
        if not response.choices:  # nothing to store: counted, and sent again by the next run
            ledger.failed += 1
            errors.append(f"{request.custom_id}: EmptyAnswer: the server's response has no choices")
            return
        content = response.choices[0].message.content or ""
        await asyncio.to_thread(store.put, request, content, usage, f"http:{self.config.base_url}")
        if answers is not None:
            answers[request.key] = content

    async def answer(self, requests: list[ChatRequest], store: ResponseStore, ledger: Ledger,
                     answers: dict[str, str] | None = None) -> list[str]:
        """Send ``requests``, storing each answer as it arrives (and into ``answers`` by key); returns errors that outlived retries."""
        errors: list[str] = []
        tasks = [asyncio.ensure_future(self._one(r, store, ledger, errors, answers)) for r in requests]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # e.g. a store write failed: stop this call's other requests too (an actor's event loop outlives the
            # call, so they would otherwise run on, detached), then raise the original error
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return errors

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self.client.close()


async def _complete_http(requests: list[ChatRequest], store: ResponseStore, config: HTTPEngineConfig, ledger: Ledger) -> list[str]:
    engine = HTTPEngine(config)
    try:
        return await engine.answer(requests, store, ledger)
    finally:
        await engine.aclose()


def complete_http(requests: list[ChatRequest], store: ResponseStore, config: HTTPEngineConfig, ledger: Ledger) -> list[str]:
    """Send ``requests`` to the endpoint, storing each answer as it arrives; returns errors that outlived retries."""
    return asyncio.run(_complete_http(requests, store, config, ledger))
