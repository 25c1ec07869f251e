"""`synthir run syntriever` end to end on a SciFact subsample: recorded teacher, Ray Train, mining, SmolLM2 judge."""

import subprocess
import sys

import pytest

from synthir import storage
from synthir.config import load_config
from synthir.llm.batchfile import read_requests
from synthir.pipelines.syntriever import SyntrieverConfig, SyntrieverPipeline
from synthir.synth.answer import MissingAnswers

TINY = ["subsample.train_queries=24", "subsample.test_queries=20", "subsample.corpus_distractors=40",
        "stage1.train.batch_size=8", "stage1.train.max_steps=2", "stage1.train.max_seq_length=64",
        "preferences.max_queries=2", "preferences.pairs=2", "preferences.max_tokens=8",
        "stage2.batch_size=2", "stage2.max_steps=2", "stage2.max_seq_length=64", "ray.num_cpus=2"]


@pytest.mark.slow
def test_run_syntriever_end_to_end_then_rerun_reuses_everything(ray_local, tmp_path):
    cfg = load_config(SyntrieverConfig, "configs/syntriever-scifact-minilm.yaml",
                      [*TINY, f"storage={tmp_path}", "name=tiny",
                       "stage1.train.cpus_per_worker=1", "stage2.cpus_per_worker=1"])
    out = SyntrieverPipeline(cfg).run()
    assert [r["row"] for r in out["rows"]] == ["base", "stage1", "stage2"]
    assert out["subsample"]["queries"] == {"train": 24, "test": 20} and out["synth"]["requests_sent"] == 0
    prefs = out["preferences"]
    assert prefs["pairs"] == 4 and prefs["requests_sent"] == 4
    assert prefs["triples"] + prefs["parse_failures"] == 4
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
