"""An OpenAI-compatible chat-completions server over a local generator (SmolLM2 via transformers, or echo).

Requests are gathered by an asyncio micro-batcher and answered by the generator in a worker thread, so the event
loop stays responsive. For tests it can inject failures (every n-th request answered with 429/500 before
generation) and add latency; ``/stats`` counts requests per content key (the same key as the client's response
store) so tests can check that nothing was generated twice.

CLI: ``python -m synthir.serving.llm_server --port 8000 --model echo --latency-ms 200 --fail-every 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import time
import uuid
from collections import Counter
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from synthir.llm.store import ChatRequest

DEFAULT_MODEL = "bundled:smollm2-135m-instruct"


class ChatMessage(BaseModel):
    """One OpenAI chat message (extra fields such as ``name`` are ignored)."""

    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | None = ""


class ChatCompletionBody(BaseModel):
    """The subset of an OpenAI chat-completion request body this server honours; extras are ignored."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())
    model: str | None = None
    messages: list[ChatMessage]
    # int | float keeps the JSON number as sent (0 stays 0, not 0.0), so the stats key equals the client's key
    temperature: int | float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    top_p: int | float | None = None


class MicroBatcher:
    """Dynamic batching: each generator call takes everything queued (up to ``batch_size``) and runs in a thread.

    Requests that arrive while a batch is generating form the next batch, so batches grow with load and an idle
    server adds no latency. ``max_wait_s > 0`` additionally holds a batch open that long to gather more.
    """

    def __init__(self, generator: Any, batch_size: int = 8, max_wait_s: float = 0.0):
        """Wrap ``generator`` (anything with ``generate(messages_list, sampling_list)``)."""
        self.generator = generator
        self.batch_size = max(1, batch_size)
        self.max_wait_s = max_wait_s
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    def _ensure_started(self) -> asyncio.Queue:
        if self._queue is None or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run(self._queue))
        return self._queue

    async def submit(self, messages: list[dict], sampling: dict) -> dict:
        """Queue one chat and wait for its answer."""
        future = asyncio.get_running_loop().create_future()
        await self._ensure_started().put((messages, sampling, future))
        return await future

    async def _run(self, queue: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            while len(batch) < self.batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            batch = [item for item in batch if not item[2].done()]
            if not batch:
                continue
            try:
                answers = await loop.run_in_executor(None, self.generator.generate,
                                                     [b[0] for b in batch], [b[1] for b in batch])
                for (_, _, future), answer in zip(batch, answers):
                    if not future.done():
                        future.set_result(answer)
            except Exception as exc:  # noqa: BLE001 - the error goes to every waiting request
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)

    async def close(self) -> None:
        """Stop the batching task."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass


class ServerStats:
    """Counters behind ``/stats``: requests received, answered, injected failures, answers per content key,
    the most requests ever in the handler at once (``max_in_flight``: what a client's concurrency limit allowed) and
    the client connections seen (``connections``: distinct client address and port, so a client that reuses its
    connections shows few)."""

    def __init__(self) -> None:
        """Start from zero."""
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Zero every counter."""
        self.requests = 0
        self.answered = 0
        self.failed_injected = 0
        self.undelivered = 0
        self.by_key: Counter[str] = Counter()
        self.max_in_flight = self.in_flight  # requests still in the handler stay counted
        self.clients: set[tuple[str, int]] = set()

    def as_dict(self) -> dict:
        """The JSON shape of ``/stats``."""
        return {"requests": self.requests, "answered": self.answered, "failed_injected": self.failed_injected,
                "undelivered": self.undelivered, "by_key": dict(self.by_key), "duplicates": sum(1 for n in self.by_key.values() if n > 1),
                "max_in_flight": self.max_in_flight, "connections": len(self.clients)}


def build_app(generator: Any, model_name: str, latency_ms: float = 0, fail_codes: list[int] | None = None,
              fail_every: int = 0, batch_size: int | None = None) -> FastAPI:
    """Build the FastAPI app: ``/v1/chat/completions``, ``/v1/models``, ``/stats``, ``/stats/reset``."""
    codes = list(fail_codes or [429, 500])
    code_cycle = itertools.cycle(codes)
    stats = ServerStats()
    if batch_size is None:
        batch_size = getattr(getattr(generator, "config", None), "batch_size", 8)
    batcher = MicroBatcher(generator, batch_size=batch_size)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await batcher.close()

    app = FastAPI(title="synthir LLM server", lifespan=lifespan)
    app.state.stats = stats
    app.state.batcher = batcher

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionBody, request: Request):
        """Answer one OpenAI chat completion (or an injected failure)."""
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        if request.client is not None:
            stats.clients.add((request.client.host, request.client.port))
        try:
            return await respond(body, request)
        finally:
            stats.in_flight -= 1

    async def respond(body: ChatCompletionBody, request: Request):
        """The chat completion itself: an injected failure, or the generator's answer after the latency."""
        stats.requests += 1
        number = stats.requests
        if fail_every > 0 and number % fail_every == 0:
            code = next(code_cycle)
            stats.failed_injected += 1
            headers = {"retry-after": "0"} if code == 429 else {}
            return JSONResponse(status_code=code, headers=headers,
                                content={"error": {"message": f"injected failure {code} (request {number})",
                                                   "type": "injected_failure", "code": code}})
        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000.0)
        messages = [{"role": m.role, "content": m.content or ""} for m in body.messages]
        max_tokens = body.max_tokens if body.max_tokens is not None else body.max_completion_tokens
        sampling = {k: v for k, v in {"temperature": body.temperature, "max_tokens": max_tokens,
                                      "top_p": body.top_p}.items() if v is not None}
        try:
            generated = await batcher.submit(messages, sampling)
        except Exception as exc:  # noqa: BLE001
            return JSONResponse(status_code=500, content={"error": {"message": f"generation failed: {exc}",
                                                                    "type": "server_error"}})
        model = body.model or model_name
        if await request.is_disconnected():
            # The client went away (killed, timed out) while we generated: nothing is delivered, so a resend
            # of this request is not a duplicate answer. Counted apart.
            stats.undelivered += 1
            return JSONResponse(status_code=499, content={"error": {"message": "client disconnected", "type": "undelivered"}})
        stats.answered += 1
        stats.by_key[ChatRequest.make("x", model, messages, sampling).key] += 1
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": generated["content"]},
                             "finish_reason": generated["finish_reason"]}],
                "usage": generated["usage"]}

    @app.get("/v1/models")
    async def models():
        """List the one served model."""
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                            "owned_by": "synthir"}]}

    @app.get("/stats")
    async def get_stats():
        """Counters since start (or the last reset)."""
        return stats.as_dict()

    @app.post("/stats/reset")
    async def reset_stats():
        """Zero the counters."""
        stats.reset()
        return stats.as_dict()

    return app


def serve(host: str = "127.0.0.1", port: int = 8000, model: str = DEFAULT_MODEL, latency_ms: float = 0,
          fail_every: int = 0, fail_codes: tuple[int, ...] | list[int] = (429, 500), batch_size: int = 8,
          max_new_tokens: int = 256, torch_threads: int | None = None) -> None:
    """Load the generator (``echo`` or a transformers model) and run the server with uvicorn."""
    import uvicorn

    from synthir.llm.hf_engine import make_generator

    generator = make_generator(model, batch_size=batch_size, max_new_tokens=max_new_tokens,
                               torch_threads=torch_threads)
    app = build_app(generator, model, latency_ms=latency_ms, fail_codes=list(fail_codes), fail_every=fail_every,
                    batch_size=batch_size)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m synthir.serving.llm_server --port 8000 --model echo``."""
    p = argparse.ArgumentParser(description="OpenAI-compatible chat server over a local model (or echo).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default=DEFAULT_MODEL, help="'echo', 'bundled:smollm2-135m-instruct' or a HF folder")
    p.add_argument("--latency-ms", type=float, default=0)
    p.add_argument("--fail-every", type=int, default=0, help="answer every n-th request with an injected failure")
    p.add_argument("--fail-codes", default="429,500", help="comma-separated status codes to cycle through")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--torch-threads", type=int, default=None)
    a = p.parse_args(argv)
    serve(host=a.host, port=a.port, model=a.model, latency_ms=a.latency_ms, fail_every=a.fail_every,
          fail_codes=[int(c) for c in a.fail_codes.split(",") if c.strip()], batch_size=a.batch_size,
          max_new_tokens=a.max_new_tokens, torch_threads=a.torch_threads)


if __name__ == "__main__":
    main()
