"""Stage-2 preferences: pairs of each top-K, P_compare requests, position swap, triples, Batch export."""

import pyarrow as pa
import pytest

from synthir import storage
from synthir.dense.mine import top_k
from synthir.llm.batchfile import read_requests
from synthir.llm.store import ResponseStore
from synthir.synth.answer import MissingAnswers
from synthir.synth.preferences import PreferenceConfig, build_compare_requests, choose_pairs, synthesize_preferences

QUERIES = {"q1": "what causes tides?", "q2": "does insulin lower glucose?"}
PASSAGES = {d: f"passage {d}" for d in ("a", "b", "c", "d")}


def _topk():
    run = {"q1": {"a": 0.9, "b": 0.8, "c": 0.7, "gold": 0.95}, "q2": {"d": 0.5, "c": 0.6}}
    return top_k(run, 3, exclude={"q1": {"gold": 1}})


def test_top_k_excludes_gold_and_ranks():
    t = _topk().to_pydict()
    assert t["query_id"] == ["q1", "q2"] and t["doc_ids"] == [["a", "b", "c"], ["c", "d"]]
    assert top_k({"q": {"x": 1.0, "y": 1.0}}, 1).to_pydict()["doc_ids"] == [["x"]]  # ties by id


def test_pairs_are_distinct_and_in_retrieval_order():
    import random

    assert choose_pairs(["a", "b", "c"], None, random.Random(0)) == [("a", "b"), ("a", "c"), ("b", "c")]
    some = choose_pairs(list("abcde"), 4, random.Random(0))
    assert len(set(some)) == 4 and all(x < y for x, y in some)


def _answer_all(store, config, answers):
    for _, a, b, reqs in build_compare_requests(_topk(), QUERIES, PASSAGES, config):
        for req in reqs:
            store.put(req, answers(req.custom_id), source="test")


def test_position_swap_keeps_only_agreeing_verdicts(tmp_path):
    config = PreferenceConfig(engine="batch", model="judge", position_swap=True, storage=str(tmp_path))
    store = ResponseStore(storage.join(str(tmp_path), "responses"))
    reqs = build_compare_requests(_topk(), QUERIES, PASSAGES, config)
    assert [r.custom_id for r in reqs[0][3]] == ["syntriever/compare/q1/a/b", "syntriever/compare/q1/b/a"]
    assert "Passage #1: passage b" in reqs[0][3][1].messages[0][1] and dict(reqs[0][3][0].sampling)["temperature"] == 0.0

    def judge(custom_id):
        _, _, qid, first, second = custom_id.split("/")
        if qid == "q2":
            return "**Passage #1**"  # always the first shown: position bias, cancelled by the swap
        if {first, second} == {"a", "c"}:
            return "I am not sure."  # unparseable: counted, never a label
        return "Passage #1" if min(first, second) == first else "Answer: Passage #2"  # prefers the smaller id
    _answer_all(store, config, judge)
    summary = synthesize_preferences(_topk(), QUERIES, PASSAGES, config, storage.join(str(tmp_path), "t.parquet"))
    triples = storage.read_table(summary["table"]).to_pylist()
    assert [(t["query_id"], t["c_plus_id"], t["c_minus_id"]) for t in triples] == [("q1", "a", "b"), ("q1", "b", "c")]
    assert triples[0]["c_plus"] == "passage a" and triples[0]["query"] == QUERIES["q1"]
    assert summary["pairs"] == 4 and summary["requests"] == 8 and summary["parse_failures"] == 2
    assert summary["swap_disagreements"] == 1 and summary["requests_sent"] == 0 and summary["from_store"] == 8


def test_missing_comparisons_export_as_an_openai_batch_file(tmp_path):
    config = PreferenceConfig(engine="batch", model="gpt-judge", storage=str(tmp_path))
    with pytest.raises(MissingAnswers) as err:
        synthesize_preferences(_topk(), QUERIES, PASSAGES, config, storage.join(str(tmp_path), "t.parquet"))
    exported = read_requests(err.value.uri)
    assert sorted(exported) == sorted([
        "syntriever/compare/q1/a/b", "syntriever/compare/q1/a/c", "syntriever/compare/q1/b/c", "syntriever/compare/q2/c/d"])
    assert all(r.model == "gpt-judge" for r in exported.values())
    assert not storage.exists(storage.join(str(tmp_path), "t.parquet"))
