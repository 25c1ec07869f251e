"""Stage-2 preferences: pairs of each top-K, P_compare requests, position swap, triples, Batch export."""

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


def _recorded_answers() -> dict[str, str]:
    """custom_id -> the recorded judge's answer, read straight from the bundled Batch output file."""
    import gzip
    import json

    from synthir.synth.syntriever import recorded_teacher_dir

    with gzip.open(storage.join(recorded_teacher_dir(), "compare-answers.jsonl.gz"), "rt") as f:
        rows = [json.loads(line) for line in f]
    return {r["custom_id"]: r["response"]["body"]["choices"][0]["message"]["content"] for r in rows}


def _recorded_top5(answers: dict[str, str], qid: str) -> list[str]:
    """The top-5 the recorded comparisons of ``qid`` were made on, in the exporting model's order."""
    docs = []
    for custom_id in answers:
        _, _, q, a, b = custom_id.split("/")
        if q == qid:
            docs += [d for d in (a, b) if d not in docs]
    return docs


def test_recorded_judge_replays_with_zero_requests_and_counts_coverage(tmp_path):
    from synthir.data.beir import load_beir

    ds = load_beir("scifact", splits=("train",))
    queries = dict(zip(ds.queries["id"].to_pylist(), ds.queries["text"].to_pylist()))
    answers = _recorded_answers()
    d1, d2, d3, d4, _ = _recorded_top5(answers, "0")
    other = next(d for d in ds.corpus["id"].to_pylist() if d not in _recorded_top5(answers, "0"))
    # a stage-1 model that ranks d2 above d1 and mined `other` instead of the recorded fifth candidate
    topk = top_k({"0": {d2: 5.0, d1: 4.0, d3: 3.0, d4: 2.0, other: 1.0}}, 5)
    config = PreferenceConfig(storage=str(tmp_path))  # the default judge: engine recorded
    assert config.engine == "recorded" and config.unrecorded == "skip"
    summary = synthesize_preferences(topk, queries, ds.passages(), config, storage.join(str(tmp_path), "t.parquet"),
                                     qrels=ds.qrels_dict("train"))
    assert summary["pairs"] == 10 and summary["requests_sent"] == 0
    # 6 pairs among the four recorded candidates (one of them shown the other way round), 4 with `other`
    assert summary["judged_by"] == {"recorded": 5, "recorded_reversed": 1, "unrecorded": 4, "live": 0}
    assert summary["coverage"] == 0.6 and summary["unanswered_pairs"] == 4 and summary["triples"] == 6
    triples = storage.read_table(summary["table"]).to_pylist()
    for t in triples:  # every triple is the recorded verdict, whichever way round the pair was shown
        a, b = (t["c_plus_id"], t["c_minus_id"]) if f"syntriever/compare/0/{t['c_plus_id']}/{t['c_minus_id']}" in answers \
            else (t["c_minus_id"], t["c_plus_id"])
        assert answers[f"syntriever/compare/0/{a}/{b}"] == ("Passage #1" if t["c_plus_id"] == a else "Passage #2")
    assert {frozenset((t["c_plus_id"], t["c_minus_id"])) for t in triples} == {
        frozenset(p) for p in [(d1, d2), (d1, d3), (d1, d4), (d2, d3), (d2, d4), (d3, d4)]}
    assert summary["gold_agreement"]["pairs_with_one_gold"] == sum(
        (t["c_plus_id"] in ds.qrels_dict("train")["0"]) != (t["c_minus_id"] in ds.qrels_dict("train")["0"]) for t in triples)
    # without reusing reversed answers the (d2, d1) pair has none; with `judge` the rest go to the fallback judge
    strict = PreferenceConfig(storage=str(tmp_path), reuse_reversed=False)
    again = synthesize_preferences(topk, queries, ds.passages(), strict, storage.join(str(tmp_path), "t2.parquet"))
    assert again["judged_by"]["recorded"] == 5 and again["judged_by"]["unrecorded"] == 5 and again["triples"] == 5
    asked = PreferenceConfig(storage=str(tmp_path), unrecorded="judge", fallback_engine="batch", fallback_model="gpt-judge")
    with pytest.raises(MissingAnswers) as err:
        synthesize_preferences(topk, queries, ds.passages(), asked, storage.join(str(tmp_path), "t3.parquet"))
    exported = read_requests(err.value.uri)
    assert sorted(exported) == sorted(f"syntriever/compare/0/{a}/{other}" for a in (d2, d1, d3, d4))
    assert all(r.model == "gpt-judge" for r in exported.values())


def test_recorded_judge_needs_its_model_name():
    with pytest.raises(ValueError, match="recorded"):
        PreferenceConfig(engine="recorded", model="gpt-4o")


def test_gold_agreement_counts_only_pairs_with_exactly_one_gold_document():
    from synthir.synth.preferences import gold_agreement

    qrels = {"q": {"g": 1, "h": 1}}
    triples = [("q", "g", "x"), ("q", "x", "h"), ("q", "x", "y"), ("q", "g", "h"), ("q", "h", "y")]
    assert gold_agreement(triples, qrels) == {"pairs_with_one_gold": 3, "prefers_gold": 2, "agreement": 0.6667}
    assert gold_agreement([("q", "x", "y")], qrels)["agreement"] is None
