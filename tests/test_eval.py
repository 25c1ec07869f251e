"""The evaluation job end to end: BM25, dense on Ray Data + faiss, s3:// storage, the CLI's --json."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from synthir import storage
from synthir.cli import app
from synthir.dense.index import DenseIndex, IndexConfig
from synthir.eval.run import EvalConfig, run_eval


def test_index_kinds_agree_on_exact_neighbours():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 16)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"d{i}" for i in range(500)]
    exact, _ = DenseIndex.build(ids, x, IndexConfig()).search(x[:20], 1)
    assert [r[0] for r in exact] == ids[:20]
    for kind in ("ivf", "hnsw"):
        got, _ = DenseIndex.build(ids, x, IndexConfig(kind=kind, nlist=8, nprobe=8)).search(x[:20], 1)
        assert [r[0] for r in got] == ids[:20]


def test_index_save_load(tmp_path):
    x = np.eye(4, dtype="float32")
    idx = DenseIndex.build(list("abcd"), x)
    idx.save(str(tmp_path / "idx"))
    ids, scores = DenseIndex.load(str(tmp_path / "idx")).search(x[2:3], 2)
    assert ids[0][0] == "c" and scores[0][0] == pytest.approx(1.0)


def test_bm25_full_scifact_in_published_range(tmp_path):
    res = run_eval(EvalConfig(retriever="bm25", storage=str(tmp_path)))
    # Anserini publishes 66.5 (multifield) / 67.9 (flat) nDCG@10 on SciFact test.
    assert 0.66 <= res["metrics"]["ndcg@10"] <= 0.68
    manifest = storage.read_json(storage.join(res["run_dir"], "manifest.json"))
    assert manifest["counts"] == {"corpus": 5183, "queries": 300}
    assert manifest["metrics"]["ndcg@10"] == res["metrics"]["ndcg@10"]
    assert manifest["config"]["retriever"] == "bm25" and len(manifest["config_hash"]) == 12


def test_dense_eval_local_then_s3_gives_same_numbers(scifact_mini, tmp_path, ray_local, s3_server):
    local = run_eval(EvalConfig(dataset=str(scifact_mini), retriever="dense", storage=str(tmp_path)))
    m = local["metrics"]
    assert m["ndcg@10"] > 0.6 and m["recall@100"] > 0.9  # a real encoder on real queries
    # Second run reuses the finished embeddings instead of encoding again.
    again = run_eval(EvalConfig(dataset=str(scifact_mini), retriever="dense", storage=str(tmp_path), top_k=10))
    assert again["encode_s"] == local["encode_s"]

    storage.copy_tree(str(scifact_mini), "s3://synthir/data/scifact_mini")
    remote = run_eval(EvalConfig(dataset="s3://synthir/data/scifact_mini", retriever="dense", storage="s3://synthir/runs"))
    assert remote["run_dir"].startswith("s3://synthir/runs/eval/")
    for k, v in m.items():
        assert remote["metrics"][k] == pytest.approx(v, abs=1e-6)
    keys = [o["Key"] for o in s3_server["client"].list_objects_v2(Bucket="synthir", Prefix="runs/")["Contents"]]
    assert any(k.endswith("manifest.json") for k in keys) and any(k.endswith("_SUCCESS.json") for k in keys)
    assert any(k.startswith("runs/embeddings/") and k.endswith(".parquet") for k in keys)


def test_cli_json_last_line(scifact_mini, tmp_path):
    result = CliRunner().invoke(app, ["eval", "--dataset", str(scifact_mini), "--retriever", "bm25", "--storage", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    last = json.loads(result.output.strip().splitlines()[-1])
    assert set(last) >= {"ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "recall@100"}
    assert all(0 <= last[k] <= 1 for k in ("ndcg@1", "ndcg@10"))


def test_cli_bad_input_is_a_clear_error(tmp_path):
    r = CliRunner().invoke(app, ["eval", "--dataset", str(tmp_path / "missing"), "--retriever", "bm25"])
    assert r.exit_code == 2 and "corpus.jsonl: file not found" in r.output
    r = CliRunner().invoke(app, ["eval", "--set", "retriver=bm25"])
    assert r.exit_code == 2 and "unknown key 'retriver'" in r.output
