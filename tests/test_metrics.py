"""IR metrics against values computed by hand."""

import math

import pytest

from synthir.eval.metrics import evaluate, parse_metric, per_query

QRELS = {"q1": {"d1": 1, "d3": 1}, "q2": {"d9": 1}}
RUN = {"q1": {"d2": 0.9, "d1": 0.8, "d4": 0.7, "d3": 0.6}, "q2": {"d5": 0.5, "d6": 0.4}}


def test_hand_computed_values():
    m = per_query(QRELS, RUN, ["ndcg@3", "ndcg@10", "map@10", "recall@2", "mrr@10", "mrr@1", "hit@1", "hit@2", "precision@2"])
    q1 = m["q1"]
    idcg = 1 + 1 / math.log2(3)
    assert q1["ndcg@3"] == pytest.approx((1 / math.log2(3)) / idcg)
    assert q1["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / idcg)
    assert q1["map@10"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert q1["recall@2"] == pytest.approx(0.5)
    assert q1["mrr@10"] == pytest.approx(0.5) and q1["mrr@1"] == 0.0
    assert q1["hit@1"] == 0.0 and q1["hit@2"] == 1.0 and q1["precision@2"] == pytest.approx(0.5)
    assert all(v == 0.0 for v in m["q2"].values())


def test_mean_counts_unanswered_queries_as_zero():
    only_q1 = {"q1": RUN["q1"]}
    assert evaluate(QRELS, only_q1, ["mrr@10"])["mrr@10"] == pytest.approx(0.25)


def test_identical_ids_are_ignored_like_beir():
    qrels = {"7": {"d1": 1}}
    run = {"7": {"7": 2.0, "d1": 1.0}}
    assert evaluate(qrels, run, ["mrr@10"])["mrr@10"] == 1.0
    assert evaluate(qrels, run, ["mrr@10"], ignore_identical_ids=False)["mrr@10"] == 0.5


def test_bad_metric_name():
    with pytest.raises(ValueError, match="ndcg@x"):
        parse_metric("ndcg@x")


def test_summary_tables_agree_and_leave_missing_values_empty():
    from synthir.eval.report import format_table, markdown_table

    rows = [{"row": "base", "ndcg@10": 0.6451, "examples_per_s": None}, {"row": "stage1", "ndcg@10": 0.7, "examples_per_s": 1234.4}]
    text = format_table(rows, ["row", "ndcg@10", "examples_per_s"], percent=["ndcg@10"]).splitlines()
    assert text[2].split() == ["base", "64.51"] and text[3].split() == ["stage1", "70.00", "1234"]
    md = markdown_table(rows, ["row", "ndcg@10", "examples_per_s"], percent=["ndcg@10"]).splitlines()
    assert md[2] == "| base | 64.51 |  |" and md[3] == "| stage1 | 70.00 | 1234 |"
