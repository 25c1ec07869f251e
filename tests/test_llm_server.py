"""The OpenAI-compatible LLM server as a separate process (echo backend), and the real SmolLM2 generator."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

openai = pytest.importorskip("openai")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """A running ``python -m synthir.serving.llm_server`` process."""

    def __init__(self, *args: str, timeout: float = 60.0):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "synthir.serving.llm_server", "--host", "127.0.0.1",
                                      "--port", str(self.port), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read().decode(errors='replace')}")
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                self.stop()
                raise RuntimeError("server did not come up")
            time.sleep(0.1)

    def client(self, **kwargs) -> "openai.OpenAI":
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="test", **kwargs)

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/stats", timeout=5).json()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def echo_server():
    server = _Server("--model", "echo")
    yield server
    server.stop()


@pytest.fixture
def flaky_server():
    server = _Server("--model", "echo", "--fail-every", "2", "--fail-codes", "429,500")
    yield server
    server.stop()


def _ask(client, text: str, **kw):
    return client.chat.completions.create(model="echo", messages=[{"role": "user", "content": text}],
                                          temperature=0, max_tokens=32, **kw)


def test_echo_server_openai_client_and_stats(echo_server):
    client = echo_server.client(max_retries=0)
    models = client.models.list()
    assert [m.id for m in models.data] == ["echo"]
    r = _ask(client, "hello world")
    assert r.choices[0].message.content.startswith("echo: hello world")
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == 2 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    with ThreadPoolExecutor(8) as pool:  # concurrent requests go through the micro-batcher
        answers = list(pool.map(lambda i: _ask(client, f"question {i}"), range(16)))
    assert [a.choices[0].message.content.split()[2] for a in answers] == [str(i) for i in range(16)]
    _ask(client, "hello world")  # the same request again: one duplicate key
    stats = echo_server.stats()
    assert stats["requests"] == stats["answered"] == 18
    assert stats["failed_injected"] == 0
    assert len(stats["by_key"]) == 17 and stats["duplicates"] == 1
    # the key is the client's response-store key for the same request
    from synthir.llm.store import ChatRequest

    key = ChatRequest.make("any", "echo", [{"role": "user", "content": "hello world"}],
                           {"temperature": 0, "max_tokens": 32}).key
    assert stats["by_key"][key] == 2
    reset = httpx.post(f"{echo_server.url}/stats/reset").json()
    assert reset["requests"] == 0 and reset["by_key"] == {}
    # extra OpenAI fields are ignored
    raw = httpx.post(f"{echo_server.url}/v1/chat/completions",
                     json={"model": "echo", "messages": [{"role": "user", "content": "x"}], "n": 1,
                           "stream": False, "seed": 3, "max_tokens": 2}).json()
    assert raw["object"] == "chat.completion" and raw["choices"][0]["finish_reason"] == "length"
    assert raw["usage"]["completion_tokens"] == 2


def test_injected_failures_are_retried_without_duplicates(flaky_server):
    client = flaky_server.client(max_retries=3)
    texts = [f"prompt number {i}" for i in range(10)]
    answers = [_ask(client, t) for t in texts]
    assert all(a.choices[0].message.content.startswith("echo: prompt number") for a in answers)
    stats = flaky_server.stats()
    assert stats["failed_injected"] > 0
    assert stats["answered"] == 10 and stats["requests"] == 10 + stats["failed_injected"]
    assert stats["duplicates"] == 0 and len(stats["by_key"]) == 10
    # without retries the injected failures surface as the right errors
    bare = flaky_server.client(max_retries=0)
    errors = []
    for i in range(4):
        try:
            _ask(bare, f"bare {i}")
        except openai.APIStatusError as exc:
            errors.append(exc.status_code)
    assert sorted(set(errors)) == [429, 500]


def test_smollm2_generator_greedy_batch():
    from synthir.llm.hf_engine import HFEngineConfig, HFGenerator

    gen = HFGenerator(HFEngineConfig(torch_threads=2, batch_size=8))
    chats = [[{"role": "user", "content": "What is the capital of France?"}],
             [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name a fruit."}]]
    sampling = [{"temperature": 0, "max_tokens": 8}] * 2
    t0 = time.time()
    first = gen.generate(chats, sampling)
    second = gen.generate(chats, sampling)
    assert time.time() - t0 < 20
    assert len(first) == 2
    for answer in first:
        assert answer["content"].strip()
        assert answer["finish_reason"] in ("stop", "length")
        usage = answer["usage"]
        assert 0 < usage["completion_tokens"] <= 8 and usage["prompt_tokens"] > 0
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert first[0]["content"] != first[1]["content"]
    assert [a["content"] for a in first] == [a["content"] for a in second]
    assert "paris" in first[0]["content"].lower()
