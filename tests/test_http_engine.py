"""The http engine against the project's own OpenAI-compatible server, run as a separate process on 127.0.0.1."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from synthir.llm.engines import HTTPEngine, HTTPEngineConfig, VLLMEngineConfig, build_vllm_processor, complete_http, complete_vllm
from synthir.llm.stage import EngineStageConfig, answer_on_ray
from synthir.llm.store import ChatRequest, Ledger, ResponseStore


def _requests(n: int) -> list[ChatRequest]:
    return [ChatRequest.make(f"t/{i}", "echo", [{"role": "user", "content": f"question {i}"}], {"temperature": 0.0, "max_tokens": 16})
            for i in range(n)]


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_retries_through_injected_429_and_500(echo_server, tmp_path, transport):
    base = echo_server("--fail-every", "3", "--fail-codes", "429,500")
    store, ledger = ResponseStore(str(tmp_path / "store")), Ledger()
    config = HTTPEngineConfig(base_url=f"{base}/v1", concurrency=4, transport=transport)
    errors = complete_http(_requests(20), store, config, ledger)
    assert errors == [] and ledger.sent == 20
    assert all(store.get(r)["content"] for r in _requests(20))
    stats = httpx.get(f"{base}/stats").json()
    assert stats["failed_injected"] > 0 and stats["answered"] == 20 and stats["duplicates"] == 0
    assert 1 <= stats["max_in_flight"] <= 4  # the concurrency limit held, retries included
    assert ledger.tokens["echo"]["requests"] == 20 and ledger.tokens["echo"]["output_tokens"] > 0


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_per_request_timeout_becomes_a_counted_error(echo_server, tmp_path, transport):
    base = echo_server("--latency-ms", "3000")
    store, ledger = ResponseStore(str(tmp_path / "store")), Ledger()
    config = HTTPEngineConfig(base_url=f"{base}/v1", timeout_s=0.5, max_retries=0, transport=transport)
    start = time.perf_counter()
    errors = complete_http(_requests(2), store, config, ledger)
    assert time.perf_counter() - start < 2.5  # the 3 s server was not waited for
    assert len(errors) == 2 and all("Timeout" in e for e in errors)
    assert ledger.failed == 2 and ledger.sent == 0 and store.get(_requests(2)[0]) is None


def test_server_specific_sampling_keys_reach_the_server(echo_server, tmp_path):
    # vLLM-style keys (top_k, repetition_penalty) are not arguments of the SDK's typed create(); the body goes as is
    base = echo_server()
    req = ChatRequest.make("t/k", "echo", [{"role": "user", "content": "q"}], {"temperature": 0.0, "top_k": 5, "repetition_penalty": 1.1})
    store, ledger = ResponseStore(str(tmp_path / "store")), Ledger()
    assert complete_http([req], store, HTTPEngineConfig(base_url=f"{base}/v1"), ledger) == []
    assert ledger.sent == 1 and store.get(req)["content"]
    assert httpx.get(f"{base}/stats").json()["answered"] == 1


def test_kill_9_mid_run_then_rerun_sends_no_duplicate(echo_server, tmp_path):
    base = echo_server("--latency-ms", "200")
    cmd = [sys.executable, "-m", "synthir.cli", "synth", "syntriever", "--engine", "http", "--model", "echo",
           "--base-url", f"{base}/v1", "--concurrency", "4", "--limit", "30", "--storage", str(tmp_path), "--json"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    objects = tmp_path / "responses" / "objects"
    deadline = time.time() + 120
    while len(list(objects.rglob("*.json"))) < 25:
        assert proc.poll() is None, "synthesis finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    # Kill mid-generation, not while a finished batch is being written: an answer the server has already sent
    # but the client has not yet persisted is lost with the process and must be asked again (the one window
    # no client can close). Answers land in waves every 200 ms, so wait until the store is quiet for 50 ms.
    count, quiet_since = -1, time.time()
    while time.time() - quiet_since < 0.05:
        now = len(list(objects.rglob("*.json")))
        if now != count:
            count, quiet_since = now, time.time()
        time.sleep(0.01)
    assert proc.poll() is None, "synthesis finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored_at_kill = len(list(objects.rglob("*.json")))
    assert stored_at_kill < 4 * 30
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 30 and summary["from_store"] >= stored_at_kill
    assert summary["requests_sent"] + summary["from_store"] == 4 * 30
    # echo answers are not yes/no: every verdict is a counted parse failure, never a label
    assert summary["parse_failures"] == 30 and summary["relabeled"] == 0
    stats = httpx.get(f"{base}/stats").json()
    # Only requests in flight at the kill (at most concurrency 4) are sent again: each was either undelivered or
    # delivered but not yet persisted (then answered twice); every other key is answered exactly once.
    assert len(stats["by_key"]) == 4 * 30
    assert stats["duplicates"] == stats["answered"] - 4 * 30
    assert stats["answered"] - 4 * 30 + stats["undelivered"] <= 4
    table = pq.read_table(next(Path(tmp_path, "synth").rglob("stage1.parquet"))).to_pylist()
    assert len(table) == 30 and len({r["query_id"] for r in table}) == 30
    assert all(r["verdict"] is None and r["parse_failure"] for r in table)


def test_http_engine_on_ray_actor_pool_keeps_one_gate_per_actor_then_rerun_sends_nothing(echo_server, tmp_path, ray_local):
    """An http actor answers 96 requests (12 batches) once each; its batches share one client and one gate."""
    base = echo_server("--latency-ms", "100")
    store = ResponseStore(str(tmp_path / "store"))
    config = EngineStageConfig(kind="http", num_actors=1, num_cpus_per_actor=0.5, batch_size=8,
                               http=HTTPEngineConfig(base_url=f"{base}/v1", concurrency=3))
    reqs = _requests(96)
    assert answer_on_ray(reqs, store, config) == (96, [])
    assert all(store.get(r)["content"].startswith(f"echo: question {i} ") for i, r in enumerate(reqs))
    stats = httpx.get(f"{base}/stats").json()
    assert stats["answered"] == 96 and stats["duplicates"] == 0
    # full, and never more: an engine per batch would let the actor's overlapping batches each send 3 (11-12 measured)
    assert stats["max_in_flight"] == 3
    # one client kept across batches: its 3 connections serve all 12 (a client per batch opened 36)
    assert stats["connections"] <= 6
    assert answer_on_ray(reqs, store, config) == (0, [])  # everything from the store
    assert httpx.get(f"{base}/stats").json()["answered"] == 96


@pytest.mark.timeout(240)
def test_engine_actors_may_hold_every_cpu(echo_server, tmp_path, ray_local):
    """2 actors x 1 CPU on a 2-CPU Ray still get their input (it once waited forever on a repartition task)."""
    base = echo_server()
    config = EngineStageConfig(kind="http", num_actors=2, num_cpus_per_actor=1.0, batch_size=4,
                               http=HTTPEngineConfig(base_url=f"{base}/v1", concurrency=2))
    assert answer_on_ray(_requests(16), ResponseStore(str(tmp_path / "store")), config) == (16, [])


def test_store_failure_stops_the_call_and_its_other_requests(echo_server, tmp_path):
    """A failed durable write raises its own error and cancels the call's requests still waiting (none run on)."""
    base = echo_server("--latency-ms", "50")

    class BrokenStore(ResponseStore):
        def put(self, request, *args, **kwargs):
            raise OSError(f"disk full writing {request.custom_id}")

    async def run():
        engine = HTTPEngine(HTTPEngineConfig(base_url=f"{base}/v1", concurrency=2))
        try:
            with pytest.raises(OSError, match="disk full writing t/"):
                await engine.answer(_requests(20), BrokenStore(str(tmp_path / "s")), Ledger())
            await asyncio.sleep(0.3)  # time for 12 more requests at 50 ms if any still ran on
            return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        finally:
            await engine.aclose()

    assert asyncio.run(run()) == []
    assert httpx.get(f"{base}/stats").json()["requests"] <= 4  # the first wave (2), and the 2 its freed slots sent before the error surfaced


def test_vllm_processor_config_builds_without_vllm(ray_local):
    with pytest.raises(ValueError):
        VLLMEngineConfig(model="m", tensor_parallel_size=0)
    processor = build_vllm_processor(VLLMEngineConfig(model="/models/Mistral-7B-Instruct-v0.3", tensor_parallel_size=2, concurrency=(1, 4)))
    assert processor is not None


def test_vllm_engine_streams_each_answer_into_the_store(ray_local, tmp_path):
    # vLLM itself needs a GPU node; here its processor is stood in for by a Ray Data map with the same row contract
    # (rows in: custom_id, messages, sampling; rows out: custom_id, content, usage), so the wiring is what is tested.
    def processor(ds):
        return ds.map(lambda row: {"custom_id": row["custom_id"], "content": f"answer to {row['messages'][0]['content']}",
                                   "usage": {"prompt_tokens": 3, "completion_tokens": 2}})

    store = ResponseStore(str(tmp_path / "store"))
    errors = complete_vllm(_requests(6), store, VLLMEngineConfig(model="m"), processor=processor)
    assert errors == []
    records = store.get_many(_requests(6))
    assert [r["content"] for r in records] == [f"answer to question {i}" for i in range(6)]
    assert all(r["source"] == "vllm:m" and r["usage"] == {"prompt_tokens": 3, "completion_tokens": 2} for r in records)
    with pytest.raises(ValueError, match="vllm section"):
        from synthir.synth.syntriever import Stage1Config, synthesize_stage1

        synthesize_stage1(Stage1Config(engine="vllm", model="m", storage=str(tmp_path), limit=2))


def test_transport_changes_no_cache_key():
    # the pipeline keys its steps by the dumped teacher config; the transport changes no answer, so it stays out
    from synthir.config import config_hash
    from synthir.synth.syntriever import Stage1Config

    fast, plain = Stage1Config(http=HTTPEngineConfig(transport="aiohttp")), Stage1Config(http=HTTPEngineConfig(transport="httpx"))
    assert plain.http.transport == "httpx" and config_hash(fast) == config_hash(plain)
    assert config_hash(Stage1Config(model="another-teacher")) != config_hash(plain)  # the hash does see what answers
