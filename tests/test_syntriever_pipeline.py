"""`synthir run syntriever` end to end on a SciFact subsample: recorded teacher, Ray Train, mining, recorded judge
with the SmolLM2 fallback for the pairs it lacks."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from synthir import storage
from synthir.eval.report import benchmark_line, bundled_benchmark
from synthir.config import load_config
from synthir.llm.batchfile import read_requests
from synthir.pipelines.syntriever import SyntrieverConfig, SyntrieverPipeline
from synthir.synth.answer import MissingAnswers
from synthir.synth.preferences import TRIPLES_SCHEMA

ROOT = Path(__file__).resolve().parents[1]

TINY = ["subsample.train_queries=24", "subsample.test_queries=20", "subsample.corpus_distractors=40",
        "stage1.train.batch_size=8", "stage1.train.max_steps=2", "stage1.train.max_seq_length=64",
        "preferences.max_queries=2", "preferences.pairs=2", "preferences.max_tokens=8",
        "stage2.batch_size=2", "stage2.max_steps=2", "stage2.max_seq_length=64", "ray.num_cpus=2"]


@pytest.mark.slow
def test_run_syntriever_end_to_end_then_rerun_reuses_everything(ray_local, tmp_path):
    cfg = load_config(SyntrieverConfig, "configs/syntriever-scifact-minilm.yaml",
                      [*TINY, f"storage={tmp_path}", "name=tiny", "preferences.unrecorded=judge",
                       "stage1.train.cpus_per_worker=1", "stage2.cpus_per_worker=1"])
    out = SyntrieverPipeline(cfg).run()
    assert [r["row"] for r in out["rows"]] == ["base", "stage1", "stage2"]
    assert out["subsample"]["queries"] == {"train": 24, "test": 20} and out["synth"]["requests_sent"] == 0
    prefs = out["preferences"]
    judged = prefs["judged_by"]
    # 2 queries x 2 pairs, one order each: what the recording lacks goes to the fallback judge (bundled SmolLM2), only that
    assert prefs["pairs"] == 4 and prefs["requests"] == 4
    assert judged["recorded"] + judged["recorded_reversed"] + judged["unrecorded"] == 4
    assert judged["live"] == judged["unrecorded"] == prefs["requests_sent"]
    assert prefs["coverage"] == round((4 - judged["unrecorded"]) / 4, 4)
    kept = prefs["triples"] + prefs["swap_disagreements"]  # every other pair had at least one unparsable answer
    assert prefs["unanswered_pairs"] == 0 and kept <= 4 <= kept + prefs["parse_failures"]
    for row in out["rows"]:
        assert all(0 <= row[m] <= 1 for m in ("ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10"))
    assert storage.read_bytes(out["plot"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert storage.exists(storage.join(out["stage2_dir"], "_SUCCESS.json"))
    # per-query scores are kept next to each model, and their mean is the row's number
    stage1 = next(r for r in out["rows"] if r["row"] == "stage1")
    assert storage.list_files(out["stage1_dir"], ".per-query.json")
    scores = SyntrieverPipeline(cfg).per_query(out["stage1_dir"])
    assert len(scores) == 20
    assert all(abs(sum(v[m] for v in scores.values()) / 20 - stage1[m]) < 1e-9 for m in ("ndcg@1", "ndcg@10"))
    # a metric the cached evaluation lacks is computed, not silently missing
    wider = cfg.model_copy(update={"eval_metrics": [*cfg.eval_metrics, "recall@10"]})
    assert set(SyntrieverPipeline(wider).evaluate(out["stage1_dir"])) == {*cfg.eval_metrics, "recall@10"}
    # rerun: every step's output exists, nothing is trained, judged or sent again; same numbers
    again = SyntrieverPipeline(cfg).run()
    assert again["rows"] == out["rows"] and again["preferences"]["requests_sent"] == 0
    assert again["stage1"] == out["stage1"] and again["stage2"] == out["stage2"]


@pytest.mark.slow
def test_comparison_requests_export_as_batch_file_and_cli_reports(ray_local, tmp_path):
    overrides = [*TINY, f"storage={tmp_path}", "name=export", "preferences.engine=batch",
                 "preferences.model=gpt-4o-judge", "preferences.pairs=null", "preferences.max_queries=null",
                 "stage1.train.cpus_per_worker=1"]
    pipe = SyntrieverPipeline(load_config(SyntrieverConfig, "configs/syntriever-scifact-minilm.yaml", overrides))
    pipe.run(("synth", "stage1"))
    with pytest.raises(MissingAnswers) as err:
        pipe.run(("mine", "preferences"))
    requests = read_requests(err.value.uri)
    assert len(requests) == 24 * 10  # every training query x all C(5,2) pairs of its top-5
    assert all(c.startswith("syntriever/compare/") and r.model == "gpt-4o-judge" for c, r in requests.items())
    # the CLI names a bad key and exits 2
    bad = subprocess.run([sys.executable, "-m", "synthir.cli", "run", "syntriever", "-c",
                          "configs/syntriever-scifact-minilm.yaml", "--set", "stage1.train.lrr=1"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "stage1.train.lrr" in bad.stderr


def test_stage2_without_enough_triples_is_a_clear_error(tmp_path):
    cfg = load_config(SyntrieverConfig, "configs/syntriever-scifact-minilm.yaml", [*TINY, f"storage={tmp_path}", "name=few"])
    pipe = SyntrieverPipeline(cfg)
    uri = storage.join(tmp_path, "triples.parquet")
    with pytest.raises(ValueError, match="no preference triples"):
        pipe.stage2(uri)
    row = {"query_id": ["1"], "query": ["q"], "c_plus_id": ["a"], "c_minus_id": ["b"], "c_plus": ["A"], "c_minus": ["B"],
           "request_keys": [["k1", "k2"]]}
    storage.write_table(uri, pa.table(row, schema=TRIPLES_SCHEMA))
    with pytest.raises(ValueError) as err:  # the demo's recorded judge leaves unrecorded pairs out: say how to get more
        pipe.stage2(uri)
    assert "1 preference triples cannot fill one stage-2 batch of 2" in str(err.value)
    assert uri in str(err.value) and "preferences.unrecorded=judge" in str(err.value)
    assert not storage.exists(storage.join(pipe.stage2_dir, "_SUCCESS.json"))


def test_the_shipped_benchmark_summary_is_the_recorded_benchmark():
    reference = bundled_benchmark("scifact")
    recorded = json.loads((ROOT / "bench" / "results" / "syntriever-scifact.json").read_text())
    means = {r["row"]: r for r in recorded["mean_over_seeds"]}
    assert [r["row"] for r in reference["rows"]][:3] == ["base", "gold_only", "stage1"]
    for r in reference["rows"]:
        assert r["ndcg@10"] == means[r["row"]]["ndcg@10"] and r["seeds"] == means[r["row"]]["seeds"]
    assert bundled_benchmark("./no/such/dataset") is None


def test_benchmark_line_names_every_row_and_the_finding():
    ref = {"source": "bench/x.py", "split": "test", "queries": 300, "machine": "2 cores", "date": "2026-01-01",
           "rows": [{"row": "base", "ndcg@10": 0.645, "seeds": 1}, {"row": "stage1", "ndcg@10": 0.67222, "seeds": 3}],
           "finding": "stage1 - base +2.7 points."}
    line = benchmark_line(ref)
    assert "base 64.50, stage1 67.22 (3 seeds)" in line and "300 queries" in line and line.endswith("stage1 - base +2.7 points.")
