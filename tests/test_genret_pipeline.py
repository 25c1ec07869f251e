"""Generative-retrieval synthesis replay and the whole ``run genret`` pipeline on a tiny model."""

from __future__ import annotations

import json

import pytest

from synthir import storage
from synthir.llm.batchfile import read_requests
from synthir.llm.store import ResponseStore
from synthir.synth import genret as synth_genret
from synthir.synth.genret import GenretSynthConfig, synthesize_genret
from tests.genret_fixtures import tiny_decoder

FIVE = ["d0", "d1", "d2", "d3", "d4"]


def test_recorded_replay_sends_no_request_and_renders_the_recorded_prompts(tmp_path, monkeypatch):
    seen = []
    original = synth_genret.answer_requests

    def spy(store, requests, config, ledger):
        seen.extend(requests)
        return original(store, requests, config, ledger)

    monkeypatch.setattr(synth_genret, "answer_requests", spy)
    summary = synthesize_genret(GenretSynthConfig(dataset="allsides", storage=str(tmp_path), documents=FIVE))
    assert summary["requests_sent"] == 0 and summary["parse_failures"] == {}
    recorded = read_requests(synth_genret.recorded_teacher_files("allsides")[0])
    # every request is the recorded one byte for byte (same content key), not only the same custom_id
    assert seen and all(recorded[r.custom_id].key == r.key for r in seen)
    assert {r.custom_id.split("/")[1] for r in seen} == {"keywords", "metadata", "queries", "sentence", "constrained", "query_answer"}
    assert summary["from_store"] == len(seen)
    docs = storage.read_table(summary["documents_table"])
    assert docs["doc_id"].to_pylist() == FIVE and all(docs["keywords"].to_pylist())
    assert set(json.loads(docs["metadata"][0].as_py())) == {"Title", "Political polarity", "Topic"}
    queries = storage.read_table(summary["queries_table"])
    kinds = queries["kind"].to_pylist()
    assert summary["queries"] == {k: kinds.count(k) for k in ("queries", "sentence", "constrained", "query_answer")}
    assert kinds.count("queries") == 25 and kinds.count("query_answer") == 25
    assert all(a for a, k in zip(queries["answer"].to_pylist(), kinds) if k == "query_answer")


def test_unparsable_answers_are_counted_and_contribute_nothing(tmp_path):
    cfg = GenretSynthConfig(dataset="allsides", storage=str(tmp_path), documents=FIVE[:2], tasks=["keywords", "queries"])
    first = synthesize_genret(cfg)
    request = next(r for r in read_requests(synth_genret.recorded_teacher_files("allsides")[0]).values()
                   if r.custom_id == "genret/queries/d1")
    ResponseStore(str(tmp_path / "responses")).put(request, "I cannot help with that.")  # found first by content key
    again = synthesize_genret(cfg)
    assert first["parse_failures"] == {} and again["parse_failures"] == {"queries": 1}
    assert again["queries"]["queries"] == first["queries"]["queries"] - 5


def test_constrained_queries_need_metadata():
    with pytest.raises(ValueError, match="needs metadata"):
        GenretSynthConfig(tasks=["keywords", "constrained"])
    with pytest.raises(ValueError, match="replays model"):
        GenretSynthConfig(model="gpt-4o")


def test_eval_collapses_identical_agnews_documents():
    from synthir.data.beir import load_beir
    from synthir.generative.corpus import collapsed_dataset

    raw = load_beir("pir/agnews")
    collapsed, canonical = collapsed_dataset(raw)
    assert raw.corpus.num_rows == 500 and collapsed.corpus.num_rows == 230
    qrels = collapsed.qrels_dict("test")
    assert len(qrels) == 100 and all(d in set(collapsed.corpus["id"].to_pylist()) for q in qrels for d in qrels[q])


@pytest.mark.slow
def test_run_genret_end_to_end_on_a_tiny_model(ray_local, tmp_path, monkeypatch):
    from synthir.config import load_config
    from synthir.pipelines.genret import GenretConfig, GenretPipeline

    base = tiny_decoder(tmp_path / "base")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(GenretConfig, None, [
        "storage=runs", "subsample.test_queries=3", "subsample.documents=8", "ids.max_keywords=2",
        f"sft.base_model={base}", "sft.max_steps=3", "sft.batch_size=4", "sft.max_length=64", "sft.lr=1e-3",
        "decode.num_beams=4", "decode.top_k=4", "mining.queries=6", "rpo.max_steps=1", "rpo.batch_size=2",
        "rpo.gradient_accumulation=1", "baselines=[bm25]"])
    pipeline = GenretPipeline(cfg)
    assert pipeline.dataset.corpus.num_rows == 8 and len(pipeline.dataset.qrels_dict("test")) == 3
    out = pipeline.run()
    assert out["synth"]["requests_sent"] == 0
    assert out["sft"]["global_step"] == 3 and out["sft"]["context2id_examples"] > 0
    assert out["mine"]["queries"] == 6 and out["mine"]["pairs"] == len(storage.read_json(
        storage.join(pipeline.rpo_dir, "mined.json"))["pairs"])
    rows = {r["row"]: r for r in out["rows"]}
    assert set(rows) == ({"bm25", "genret_sft", "genret_rpo"} if out["mine"]["pairs"] else {"bm25", "genret_sft"})
    for r in rows.values():
        assert 0 <= r["hit@1"] <= r["hit@5"] <= r["hit@10"] <= 1 and 0 <= r["mrr@10"] <= 1
    assert storage.exists(out["plot"])
    # the trained model evaluates through `synthir eval --retriever genret` like the other retrievers
    from typer.testing import CliRunner

    from synthir.cli import app

    result = CliRunner().invoke(app, ["eval", "--dataset", "pir/allsides", "--retriever", "genret", "--model",
                                      pipeline.sft_dir, "--storage", "runs", "--json"])
    assert result.exit_code == 0, result.output
    last = json.loads(result.output.strip().splitlines()[-1])
    assert set(last) >= {"hit@1", "hit@10", "mrr@10", "map@10"} and 0 <= last["hit@1"] <= last["hit@10"] <= 1
    # a rerun reuses every step
    again = GenretPipeline(cfg).run()
    assert [r["hit@10"] for r in again["rows"]] == [r["hit@10"] for r in out["rows"]]


def test_synthir_eval_collapses_identical_texts_for_bm25(tmp_path):
    from synthir.eval.run import EvalConfig, run_eval

    metrics = ["hit@1", "hit@10"]
    raw = run_eval(EvalConfig(dataset="pir/agnews", retriever="bm25", metrics=metrics, storage=str(tmp_path)))
    collapsed = run_eval(EvalConfig(dataset="pir/agnews", retriever="bm25", metrics=metrics, storage=str(tmp_path),
                                    collapse_identical=True))
    manifest = storage.read_json(storage.join(collapsed["run_dir"], "manifest.json"))
    assert manifest["counts"]["corpus"] == 230
    # BM25 scores twins alike; counted as one document, a twin of the target no longer ranks above it as a miss
    assert collapsed["metrics"]["hit@1"] > raw["metrics"]["hit@1"]
    assert collapsed["metrics"]["hit@10"] >= raw["metrics"]["hit@10"]
    assert EvalConfig().model_dump()["collapse_identical"] is False
