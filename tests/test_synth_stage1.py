"""Stage-1 synthesis from the recorded teacher, the response store, and OpenAI Batch round trips."""

import gzip
import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from synthir.cli import app
from synthir.data.beir import DataError, load_beir
from synthir.llm.batchfile import export_requests, import_answers, read_requests
from synthir.llm.store import ChatRequest, ResponseStore
from synthir.synth.answer import MissingAnswers
from synthir.synth.syntriever import Stage1Config, recorded_teacher_files, synthesize_stage1


def test_request_key_depends_on_model_messages_sampling():
    a = ChatRequest.make("x/1", "m", [{"role": "user", "content": "hi"}], {"temperature": 0.7})
    assert a.key == ChatRequest.make("other/id", "m", [{"role": "user", "content": "hi"}], {"temperature": 0.7}).key
    assert a.key != ChatRequest.make("x/1", "m2", [{"role": "user", "content": "hi"}], {"temperature": 0.7}).key
    assert a.key != ChatRequest.make("x/1", "m", [{"role": "user", "content": "hi"}], {"temperature": 0.0}).key


def test_an_imported_custom_id_answers_only_its_own_model(tmp_path):
    store = ResponseStore(str(tmp_path))
    recorded = ChatRequest.make("syntriever/cot/7", "teacher", [{"role": "user", "content": "old prompt"}])
    store.put(recorded, "the answer", bind_custom_id=True)
    reworded = ChatRequest.make("syntriever/cot/7", "teacher", [{"role": "user", "content": "old prompt, reworded"}])
    assert store.get(reworded)["content"] == "the answer"  # the same model's answer to the same task
    other_model = ChatRequest.make("syntriever/cot/7", "gpt-4o", [{"role": "user", "content": "old prompt"}])
    assert store.get(other_model) is None  # never another model's answer


def test_recorded_teacher_builds_full_table_with_zero_requests(tmp_path):
    summary = synthesize_stage1(Stage1Config(storage=str(tmp_path)))
    assert summary["rows"] == 809 and summary["requests_sent"] == 0 and summary["from_store"] == 4 * 809
    # The teacher README: 44 of 809 relabel answers are "no"; all parse.
    assert summary["relabeled"] == 44 and summary["parse_failures"] == 0
    t = pq.read_table(summary["table"]).to_pylist()
    no = [r for r in t if r["verdict"] is False]
    assert len(no) == 44
    for r in no:
        assert r["p_plus"] in r["negatives"] and r["p_plus"] not in r["positives"]
    yes = next(r for r in t if r["verdict"])
    assert yes["positives"] == yes["gold_passages"] + [yes["p_plus"], yes["q_cot"]]
    assert yes["negatives"] == [yes["p_minus"]]
    # A rerun answers everything from the store again and writes the same table.
    again = synthesize_stage1(Stage1Config(storage=str(tmp_path)))
    assert again["requests_sent"] == 0 and pq.read_table(again["table"]).to_pylist() == t


def test_batch_engine_exports_missing_then_completes_after_import(tmp_path):
    cfg = Stage1Config(storage=str(tmp_path), engine="batch", model="recorded-teacher", limit=3)
    with pytest.raises(MissingAnswers) as e:
        synthesize_stage1(cfg)
    exported = read_requests(e.value.uri)
    first3 = load_beir("scifact", splits=("train",)).split_queries("train")["id"].to_pylist()[:3]
    assert sorted(exported) == sorted(f"syntriever/cot/{q}" for q in first3)
    # Answer the exported requests from the recorded teacher file (as a Batch job would) and import.
    req_uri, ans_uri = recorded_teacher_files()
    wanted = set(exported)
    answers = [l for l in gzip.decompress(open(ans_uri, "rb").read()).decode().splitlines() if json.loads(l)["custom_id"] in wanted]
    (tmp_path / "out.jsonl").write_text("\n".join(answers) + "\n")
    assert import_answers(e.value.uri, str(tmp_path / "out.jsonl"), ResponseStore(str(tmp_path / "responses")))["imported"] == 3
    # The next run finds the cot answers in the store and asks only for the next task.
    with pytest.raises(MissingAnswers) as e2:
        synthesize_stage1(cfg)
    assert sorted(read_requests(e2.value.uri)) == sorted(f"syntriever/positive/{q}" for q in first3)


def test_import_errors_name_file_and_line(tmp_path):
    req = ChatRequest.make("a/1", "m", [{"role": "user", "content": "q"}])
    export_requests([req], str(tmp_path / "in.jsonl"))
    (tmp_path / "out.jsonl").write_text(json.dumps({"custom_id": "a/2", "response": {"status_code": 200, "body": {"choices": []}}}) + "\n")
    with pytest.raises(DataError, match=r"out.jsonl:1: field 'custom_id': custom_id 'a/2' is not in"):
        import_answers(str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl"), ResponseStore(str(tmp_path / "s")))


def test_cli_json(tmp_path):
    r = CliRunner().invoke(app, ["synth", "syntriever", "--storage", str(tmp_path), "--limit", "5", "--json"])
    assert r.exit_code == 0, r.output
    last = json.loads(r.output.strip().splitlines()[-1])
    assert last["rows"] == 5 and last["requests_sent"] == 0 and last["from_store"] == 20


def test_hf_engine_on_ray_actor_pool_then_rerun_from_store(tmp_path, ray_local):
    """The real local SmolLM2 answers in a Ray Data actor pool; a rerun sends nothing."""
    cfg = Stage1Config(storage=str(tmp_path), engine="hf", model="bundled:smollm2-135m-instruct", limit=2,
                       max_tokens=8, ray_actors=1)
    first = synthesize_stage1(cfg)
    assert first["rows"] == 2 and first["requests_sent"] == 8 and first["from_store"] == 0
    assert first["tokens"]["bundled:smollm2-135m-instruct"]["output_tokens"] > 0
    rows = pq.read_table(first["table"]).to_pylist()
    assert all(r["q_cot"] and r["p_plus"] and r["p_minus"] for r in rows)
    assert first["parse_failures"] + sum(r["verdict"] is not None for r in rows) == 2
    again = synthesize_stage1(cfg)
    assert again["requests_sent"] == 0 and again["from_store"] == 8
