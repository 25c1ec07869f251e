"""IR metrics through pytrec_eval (trec_eval semantics, as BEIR and MTEB use them).

Metric names are ``<measure>@<k>``: ``ndcg@10``, ``map@10``, ``recall@100``, ``mrr@10``, ``hit@4``,
``precision@5``. Values are in 0-1, averaged over every query that has qrels (a query the run does not
answer scores 0). ``hit@k`` (generative retrieval's HIT@k) is trec_eval's ``success.k``: at least one
relevant document in the top k. ``mrr@k`` is the reciprocal rank after cutting the run at k.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytrec_eval

_MEASURES = {"ndcg": "ndcg_cut", "map": "map_cut", "recall": "recall", "precision": "P", "hit": "success"}
_NAME = re.compile(r"^(ndcg|map|recall|precision|hit|mrr)@(\d+)$")

Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]


def parse_metric(name: str) -> tuple[str, int]:
    """Split ``ndcg@10`` into ("ndcg", 10), with a clear error for unknown names."""
    m = _NAME.match(name.strip().lower())
    if not m:
        raise ValueError(f"unknown metric {name!r}; expected one of ndcg|map|recall|precision|hit|mrr followed by @k")
    return m.group(1), int(m.group(2))


def _truncate(run: Run, k: int) -> Run:
    out = {}
    for q, docs in run.items():
        top = sorted(docs.items(), key=lambda x: (-x[1], x[0]))[:k]
        out[q] = dict(top)
    return out


def per_query(qrels: Qrels, run: Run, metrics: list[str], ignore_identical_ids: bool = True) -> dict[str, dict[str, float]]:
    """Each metric for each query in ``qrels`` as ``{query_id: {metric: value}}``."""
    if ignore_identical_ids:  # BEIR/MTEB drop a retrieved doc whose id equals the query id.
        run = {q: {d: s for d, s in docs.items() if d != q} for q, docs in run.items()}
    run = {q: docs for q, docs in run.items() if q in qrels}
    parsed = [parse_metric(m) for m in metrics]
    by_measure: dict[str, list[int]] = defaultdict(list)
    mrr_ks = []
    for measure, k in parsed:
        if measure == "mrr":
            mrr_ks.append(k)
        else:
            by_measure[_MEASURES[measure]].append(k)
    results: dict[str, dict[str, float]] = {q: {m: 0.0 for m in metrics} for q in qrels}
    if by_measure:
        spec = {f"{measure}.{','.join(str(k) for k in sorted(set(ks)))}" for measure, ks in by_measure.items()}
        scored = pytrec_eval.RelevanceEvaluator(qrels, spec).evaluate(run)
        for q, values in scored.items():
            for name, (measure, k) in zip(metrics, parsed):
                if measure != "mrr":
                    results[q][name] = float(values[f"{_MEASURES[measure]}_{k}"])
    for k in sorted(set(mrr_ks)):
        scored = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(_truncate(run, k))
        for q, values in scored.items():
            for name, (measure, kk) in zip(metrics, parsed):
                if measure == "mrr" and kk == k:
                    results[q][name] = float(values["recip_rank"])
    return results


def evaluate(qrels: Qrels, run: Run, metrics: list[str], ignore_identical_ids: bool = True) -> dict[str, float]:
    """Mean of each metric over the queries in ``qrels``."""
    if not qrels:
        raise ValueError("qrels is empty: nothing to evaluate")
    return mean_over_queries(per_query(qrels, run, metrics, ignore_identical_ids), metrics)


def mean_over_queries(scores: dict[str, dict[str, float]], metrics: list[str]) -> dict[str, float]:
    """Mean of each metric over ``per_query``'s scores."""
    return {m: sum(v[m] for v in scores.values()) / len(scores) for m in metrics}


DENSE_METRICS = ["ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "recall@100"]
GENERATIVE_METRICS = ["hit@1", "hit@4", "hit@5", "hit@10", "map@10", "mrr@10"]
