"""Corpus-scale synthesis: streamed through Ray Data, every row once, store-first, resumable after kill -9, S3."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from synthir import storage
from synthir.config import ConfigError, config_hash, load_config
from synthir.llm.hf_engine import EchoGenerator
from synthir.llm.prompts import load_prompt
from synthir.llm.store import ChatRequest, ResponseStore
from synthir.synth.corpus import CorpusSynthConfig, read_output, synthesize_corpus

ROOT = Path(__file__).resolve().parents[1]


def _corpus(path: Path, n: int, files: int = 1) -> Path:
    """``n`` distinct rows (id, text, other) as ``files`` Parquet files under ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    per = -(-n // files)
    for f in range(files):
        ids = [f"doc-{i}" for i in range(f * per, min(n, (f + 1) * per))]
        pq.write_table(pa.table({"id": ids, "text": [f"text of {i}" for i in ids], "other": [1] * len(ids)}),
                       path / f"part-{f}.parquet", row_group_size=50)
    return path


def _config(tmp_path, base, **kw) -> CorpusSynthConfig:
    data = {"input": str(tmp_path / "in"), "prompt": "genret_keywords", "columns": {"context": "text"}, "model": "echo",
            "storage": str(tmp_path / "runs"), "http": {"base_url": f"{base}/v1", "concurrency": 8}, "min_actors": 1,
            "max_actors": 2, "batch_size": 32, "rows_per_part": 100, **kw}
    return CorpusSynthConfig.model_validate(data)


def test_every_row_answered_once_into_parts_then_reruns_send_nothing(echo_server, tmp_path, ray_local):
    base = echo_server()
    _corpus(tmp_path / "in", 300, files=3)
    cfg = _config(tmp_path, base)
    summary = synthesize_corpus(cfg)
    assert (summary["rows"], summary["requests_sent"], summary["from_store"], summary["failed"]) == (300, 300, 0, 0)
    assert len(summary["parts"]) >= 2  # many writers, not one
    table = read_output(summary["output"])
    rows = {r["id"]: r for r in table.to_pylist()}
    assert sorted(rows) == sorted(f"doc-{i}" for i in range(300))
    prompt = load_prompt("genret_keywords")
    for i in (0, 123, 299):
        r = rows[f"doc-{i}"]
        expected = ChatRequest.make(f"corpus/genret_keywords/doc-{i}", "echo", prompt.messages(context=f"text of doc-{i}"), prompt.sampling)
        assert r["custom_id"] == expected.custom_id and r["request_key"] == expected.key
        assert r["content"] == ResponseStore(str(tmp_path / "runs" / "responses")).get(expected)["content"]
        # the echo server's answer to exactly this row's messages (its digest covers the whole prompt)
        assert r["content"] == EchoGenerator().generate([[{"role": "user", "content": expected.messages[0][1]}]], [prompt.sampling])[0]["content"]
        assert r["source"] == "engine" and r["error"] == ""
        assert json.loads(r["sampling"]) == prompt.sampling and r["prompt"] == "genret_keywords"
    stats = httpx.get(f"{base}/stats").json()
    assert stats["answered"] == 300 and stats["duplicates"] == 0
    # the published output is reused as is, even with other execution settings
    again = synthesize_corpus(cfg.model_copy(update={"min_actors": 2, "http": cfg.http.model_copy(update={"concurrency": 3})}))
    assert again["reused"] and again["output"] == summary["output"]
    # without the marker (a crash before publishing), a new attempt is answered from the store: 0 requests
    storage.delete(storage.join(summary["output"], "_SUCCESS.json"))
    redo = synthesize_corpus(cfg)
    assert (redo["requests_sent"], redo["from_store"], redo["reused"]) == (0, 300, False)
    assert httpx.get(f"{base}/stats").json()["answered"] == 300
    attempts = os.listdir(Path(summary["output"]) / "_attempts")
    assert attempts == [redo["attempt"]]  # the older attempt is gone
    assert sorted(read_output(redo["output"])["id"].to_pylist()) == sorted(rows)


def test_kill_9_mid_run_then_rerun_loses_and_repeats_no_row(echo_server, tmp_path):
    base = echo_server("--latency-ms", "100")
    _corpus(tmp_path / "in", 400)
    cfg = {"input": str(tmp_path / "in"), "prompt": "genret_keywords", "columns": {"context": "text"}, "model": "echo",
           "storage": str(tmp_path / "runs"), "http": {"base_url": f"{base}/v1", "concurrency": 4}, "min_actors": 1,
           "batch_size": 16, "ray": {"num_cpus": 2}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "synthir.cli", "synth", "corpus", "--config", str(tmp_path / "cfg.yaml"), "--json"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    objects = tmp_path / "runs" / "responses" / "objects"
    deadline = time.time() + 180
    while len(list(objects.rglob("*.json"))) < 60:
        assert proc.poll() is None, "synthesis finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    victims = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for v in victims:  # the driver and the local Ray it started (Ray's workers leave the process group)
        try:
            v.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait()
    psutil.wait_procs(victims, timeout=30)
    stored = len(list(objects.rglob("*.json")))
    assert stored < 400
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 400 and summary["from_store"] >= stored and summary["requests_sent"] + summary["from_store"] == 400
    ids = read_output(summary["output"])["id"].to_pylist()
    assert len(ids) == 400 and len(set(ids)) == 400
    stats = httpx.get(f"{base}/stats").json()
    # Only the requests in flight at the kill (at most concurrency 4 x 1 actor) are sent again: each was either
    # undelivered (the client was gone) or delivered but not yet stored, and then answered twice.
    assert len(stats["by_key"]) == 400
    assert stats["duplicates"] == stats["answered"] - 400
    assert stats["answered"] - 400 + stats["undelivered"] <= 4


def test_output_and_store_on_s3(echo_server, tmp_path, ray_local, s3_server):
    base = echo_server()
    local = _corpus(tmp_path / "in", 90)
    s3_server["client"].upload_file(str(local / "part-0.parquet"), "synthir", "corpus-test/in/part-0.parquet")
    cfg = _config(tmp_path, base, input="s3://synthir/corpus-test/in/", storage="s3://synthir/corpus-test/runs")
    summary = synthesize_corpus(cfg)
    assert summary["output"].startswith("s3://synthir/corpus-test/runs/synth/") and summary["requests_sent"] == 90
    assert sorted(read_output(summary["output"])["id"].to_pylist()) == sorted(f"doc-{i}" for i in range(90))
    keys = s3_server["client"].list_objects_v2(Bucket="synthir", Prefix="corpus-test/runs/responses/objects/")["KeyCount"]
    assert keys == 90


def test_vllm_path_answers_only_what_the_store_lacks(tmp_path, ray_local):
    _corpus(tmp_path / "in", 40)
    cfg = CorpusSynthConfig.model_validate({"input": str(tmp_path / "in"), "prompt": "genret_keywords", "columns": {"context": "text"},
                                            "model": "m", "engine": "vllm", "vllm": {"model": "m"}, "storage": str(tmp_path / "runs"),
                                            "batch_size": 8})
    store = ResponseStore(str(tmp_path / "runs" / "responses"))
    prompt = load_prompt("genret_keywords")
    first = ChatRequest.make("corpus/genret_keywords/doc-0", "m", prompt.messages(context="text of doc-0"), prompt.sampling)
    store.put(first, "stored before", None)
    seen = []

    def processor(ds):  # stands in for ray.data.llm's vLLM processor: same row contract (messages in, content out)
        def generate(row):
            seen.append(row["custom_id"])
            return {**{k: row[k] for k in ("custom_id", "id", "model", "request_key", "messages_json", "sampling_json")},
                    "content": "gen:" + row["messages"][0]["content"][-12:], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
        return ds.map(generate)

    summary = synthesize_corpus(cfg, processor=processor)
    assert (summary["rows"], summary["requests_sent"], summary["from_store"]) == (40, 39, 1)
    rows = {r["id"]: r for r in read_output(summary["output"]).to_pylist()}
    assert rows["doc-0"]["content"] == "stored before" and rows["doc-0"]["source"] == "store"
    assert rows["doc-7"]["content"] == "gen:" + prompt.messages(context="text of doc-7")[0]["content"][-12:]
    req7 = ChatRequest.make("corpus/genret_keywords/doc-7", "m", prompt.messages(context="text of doc-7"), prompt.sampling)
    assert rows["doc-7"]["request_key"] == req7.key and store.get(req7)["content"] == rows["doc-7"]["content"]


def test_bad_input_is_named(tmp_path, ray_local, echo_server):
    base = echo_server()
    with pytest.raises(ValueError, match="genret_keywords.*takes variables \\['context'\\]"):
        _config(tmp_path, base, columns={"passage": "text"})
    with pytest.raises(ValueError, match="max_actors"):
        _config(tmp_path, base, min_actors=3, max_actors=2)
    _corpus(tmp_path / "in", 10)
    with pytest.raises(ValueError, match=r"in: no column\(s\) \['body'\] \(it has \['id', 'text', 'other'\]\)"):
        synthesize_corpus(_config(tmp_path, base, columns={"context": "body"}))
    dup = tmp_path / "dup"
    dup.mkdir()
    pq.write_table(pa.table({"id": ["a", "b", "a"], "text": ["x", "y", "z"]}), dup / "p.parquet")
    with pytest.raises(ValueError, match=r"dup: 1 repeated ids in the input column \(e.g. \['a'\]\)"):
        synthesize_corpus(_config(tmp_path, base, input=str(dup)))
    with pytest.raises(ConfigError, match="unknown key 'colums'"):
        load_config(CorpusSynthConfig, None, [f"input={dup}", "prompt=genret_keywords", "model=m", "colums.context=text"])


def test_shipped_configs_validate_and_key_ignores_execution():
    local = load_config(CorpusSynthConfig, str(ROOT / "configs" / "synth-corpus-local.yaml"))
    gpu = load_config(CorpusSynthConfig, str(ROOT / "configs" / "synth-corpus-gpu.yaml"))
    assert gpu.engine == "vllm" and gpu.vllm.concurrency == (1, 8) and local.engine == "http"
    faster = local.model_copy(update={"min_actors": 4, "max_actors": 8, "storage": "s3://b/x", "batch_size": 8})
    assert config_hash(faster) == config_hash(local)
    assert config_hash(local.model_copy(update={"prompt": "genret_queries", "constants": {"num_sequences": 3}})) != config_hash(local)
