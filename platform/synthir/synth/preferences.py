"""Syntriever stage-2 preferences: the LLM picks the more relevant of two of a query's top-K passages (P_compare).

For every query, ``pairs`` distinct pairs of its top-K candidates (default all C(K,2)) are asked at temperature 0
with the ``syntriever_compare`` prompt, named ``syntriever/compare/<query_id>/<doc_a>/<doc_b>`` (doc_a shown as
Passage #1). With ``position_swap`` each pair is also asked in the other order and kept only when both answers
agree, which cancels the LLM's position bias. Each kept verdict is a triple (q, c+, c-). Answers that cannot be
parsed are counted, never turned into a label.

With ``engine: recorded`` the bundled real judge answers for SciFact train (``_data/scifact/teacher/compare-*``,
8,090 comparisons of one stage-1 model's top-5) are imported into the response store once and replayed: 0
requests. A stage-1 model that mines a different top-5 has pairs the recording lacks; the summary counts them
(``coverage``) and ``unrecorded`` decides: leave them out, or ask ``fallback_engine`` / ``fallback_model``.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import time
from typing import Literal

import pyarrow as pa
from pydantic import Field, model_validator

from synthir import storage
from synthir.config import StrictModel, execution_only
from synthir.llm.engines import HTTPEngineConfig, VLLMEngineConfig
from synthir.llm.hf_engine import HFEngineConfig
from synthir.llm.parse import ParseFailure, parse_passage_choice
from synthir.llm.prompts import load_prompt
from synthir.llm.store import ChatRequest, Ledger, ResponseStore
from synthir.runtime import RayConfig
from synthir.synth.answer import answer_requests
from synthir.synth.syntriever import RECORDED_MODEL, import_recorded, recorded_teacher_dir

TRIPLES_SCHEMA = pa.schema([
    ("query_id", pa.string()), ("query", pa.string()), ("c_plus_id", pa.string()), ("c_minus_id", pa.string()),
    ("c_plus", pa.string()), ("c_minus", pa.string()), ("request_keys", pa.list_(pa.string())),
])


class PreferenceConfig(StrictModel):
    """Which pairs to compare and which judge answers them."""

    engine: Literal["recorded", "batch", "http", "hf", "vllm"] = Field(
        "recorded", description="recorded: the bundled SciFact judge (0 requests); batch: export an OpenAI Batch file")
    model: str = Field(RECORDED_MODEL, description="the judge model name (part of every request key)")
    unrecorded: Literal["skip", "judge"] = Field(
        "skip", description="engine recorded: pairs without a recorded answer are left out (skip) or asked of fallback_engine (judge)")
    reuse_reversed: bool = Field(
        True, description="engine recorded: the recorded answer for (b, a) answers (a, b) too, flipped: the recorded "
                          "judge ranked each query's five candidates together, so its answers carry no position")
    fallback_engine: Literal["batch", "http", "hf", "vllm"] = Field("hf", description="engine recorded, unrecorded judge: who asks the rest")
    fallback_model: str = Field("bundled:smollm2-135m-instruct", description="the model fallback_engine asks")
    pairs: int | None = Field(None, ge=1, description="N distinct pairs per query (sampled); None: all C(K,2)")
    position_swap: bool = Field(False, description="ask both orders, keep the verdicts that agree")
    max_queries: int | None = Field(None, ge=1, description="only the first N queries (a CPU demo subset)")
    max_tokens: int | None = Field(16, ge=1, description="answer length cap (part of every request key)")
    seed: int = 0
    storage: str = execution_only("./runs")
    ray_actors: int = execution_only(0, ge=0, description="0: answer from the driver; N: a Ray Data pool of N engine actors (http.concurrency is per actor)")
    ray_actor_cpus: float = execution_only(1.0, gt=0, description="CPUs each engine actor reserves (an http actor mostly waits: 0.25 is plenty)")
    http: HTTPEngineConfig = HTTPEngineConfig()
    hf: HFEngineConfig = HFEngineConfig()
    vllm: VLLMEngineConfig | None = Field(None, description="engine vllm: model, parallelism, replicas (GPU)")
    ray: RayConfig = execution_only(RayConfig())

    @model_validator(mode="after")
    def _judge_model(self) -> "PreferenceConfig":
        if self.engine == "recorded" and self.model != RECORDED_MODEL:
            raise ValueError(f"engine 'recorded' replays model {RECORDED_MODEL!r}, not {self.model!r}")
        engine, model = self.live_judge()
        if engine == "hf" and self.hf.model != model:
            self.hf = self.hf.model_copy(update={"model": model})
        return self

    def live_judge(self) -> tuple[str, str]:
        """(engine, model) that answer the requests with no stored answer."""
        if self.engine == "recorded":
            return self.fallback_engine, self.fallback_model
        return self.engine, self.model


def compare_request(qid: str, question: str, doc_a: str, doc_b: str, passage_a: str, passage_b: str, model: str,
                    max_tokens: int | None) -> ChatRequest:
    """The P_compare request showing ``doc_a`` as Passage #1 and ``doc_b`` as Passage #2."""
    prompt = load_prompt("syntriever_compare")
    sampling = {**prompt.sampling, **({"max_tokens": max_tokens} if max_tokens else {})}
    return ChatRequest.make(f"syntriever/compare/{qid}/{doc_a}/{doc_b}", model,
                            prompt.messages(passage1=passage_a, passage2=passage_b, question=question), sampling)


def choose_pairs(doc_ids: list[str], pairs: int | None, rng: random.Random) -> list[tuple[str, str]]:
    """``pairs`` distinct unordered pairs of ``doc_ids`` (all of them when None), in retrieval order."""
    every = list(itertools.combinations(doc_ids, 2))
    if pairs is None or pairs >= len(every):
        return every
    return sorted(rng.sample(every, pairs), key=every.index)


def build_compare_requests(topk: pa.Table, queries: dict[str, str], passages: dict[str, str],
                           config: PreferenceConfig) -> list[tuple[str, str, str, list[ChatRequest]]]:
    """(query_id, doc_a, doc_b, requests) for every chosen pair; two requests per pair with ``position_swap``."""
    rng = random.Random(config.seed)
    out = []
    rows = topk.to_pylist()[: config.max_queries] if config.max_queries else topk.to_pylist()
    for row in rows:
        qid = row["query_id"]
        for a, b in choose_pairs(row["doc_ids"], config.pairs, rng):
            reqs = [compare_request(qid, queries[qid], a, b, passages[a], passages[b], config.model, config.max_tokens)]
            if config.position_swap:
                reqs.append(compare_request(qid, queries[qid], b, a, passages[b], passages[a], config.model, config.max_tokens))
            out.append((qid, a, b, reqs))
    return out


def import_recorded_judge(store: ResponseStore) -> dict:
    """Import the bundled SciFact comparison answers into ``store`` once; returns the import counts."""
    base = recorded_teacher_dir()
    return import_recorded(store, "scifact-compare", storage.join(base, "compare-requests.jsonl.gz"),
                           storage.join(base, "compare-answers.jsonl.gz"))


def _pick(text: str, first: str, second: str) -> str | None:
    """The document an answer picks, ``first`` shown as Passage #1 (None: no clear pick)."""
    try:
        return first if parse_passage_choice(text) == 1 else second
    except ParseFailure:
        return None


_UNANSWERED = object()  # a request no judge answered (unrecorded: skip)


def _judge(jobs: list[tuple[str, ChatRequest, str, str]], queries: dict[str, str], passages: dict[str, str],
           config: PreferenceConfig, store: ResponseStore, ledger: Ledger) -> tuple[list, dict[str, int]]:
    """The pick of every ``(qid, request, first, second)`` job (a doc id, None, or _UNANSWERED) and who answered.

    Live engines answer every request, store first. The recorded judge answers the requests it has, exactly or
    (``reuse_reversed``) shown the other way round; the rest are left unanswered or asked of the fallback judge,
    as ``unrecorded`` says.
    """
    picks: list = [_UNANSWERED] * len(jobs)
    counts = {"recorded": 0, "recorded_reversed": 0, "unrecorded": 0, "live": 0}
    todo = list(range(len(jobs)))
    if config.engine == "recorded":
        import_recorded_judge(store)
        for j, rec in zip(todo, store.get_many([jobs[j][1] for j in todo])):
            if rec is not None:
                picks[j] = _pick(rec["content"], jobs[j][2], jobs[j][3])
                counts["recorded"] += 1
        todo = [j for j in todo if picks[j] is _UNANSWERED]
        if config.reuse_reversed and todo:
            flipped = [compare_request(q, queries[q], b, a, passages[b], passages[a], req.model, config.max_tokens)
                       for q, req, a, b in (jobs[j] for j in todo)]
            for j, rec in zip(todo, store.get_many(flipped)):
                if rec is not None:
                    picks[j] = _pick(rec["content"], jobs[j][3], jobs[j][2])
                    counts["recorded_reversed"] += 1
            todo = [j for j in todo if picks[j] is _UNANSWERED]
        counts["unrecorded"] = len(todo)
        ledger.from_store += len(jobs) - len(todo)
        if config.unrecorded == "skip":
            return picks, counts
    engine, model = config.live_judge()
    live = config.model_copy(update={"engine": engine, "model": model})
    requests = [dataclasses.replace(jobs[j][1], model=model) for j in todo]
    for j, text in zip(todo, answer_requests(store, requests, live, ledger) if requests else []):
        picks[j] = _pick(text, jobs[j][2], jobs[j][3])
    counts["live"] = len(todo)
    return picks, counts


def gold_agreement(triples: list[tuple[str, str, str]], qrels: dict[str, dict[str, int]]) -> dict:
    """How often the judge prefers the gold document, on the pairs that hold exactly one (``(qid, c+, c-)``)."""
    one_gold = [(q, p, m) for q, p, m in triples if (qrels.get(q, {}).get(p, 0) > 0) != (qrels.get(q, {}).get(m, 0) > 0)]
    agree = sum(1 for q, p, _ in one_gold if qrels[q].get(p, 0) > 0)
    return {"pairs_with_one_gold": len(one_gold), "prefers_gold": agree,
            "agreement": round(agree / len(one_gold), 4) if one_gold else None}


def synthesize_preferences(topk: pa.Table, queries: dict[str, str], passages: dict[str, str],
                           config: PreferenceConfig, out_uri: str, qrels: dict[str, dict[str, int]] | None = None) -> dict:
    """Ask every comparison (store first), write the triples table to ``out_uri``; returns the summary.

    With ``qrels`` (the training split's) the summary says how often the judge prefers the gold document.
    """
    start = time.perf_counter()
    store = ResponseStore(storage.join(config.storage, "responses"))
    ledger = Ledger()
    pairs = build_compare_requests(topk, queries, passages, config)
    jobs = [(qid, req, first, second) for qid, a, b, reqs in pairs
            for req, (first, second) in zip(reqs, ((a, b), (b, a)))]
    picks, judged = _judge(jobs, queries, passages, config, store, ledger)
    rows = {name: [] for name in TRIPLES_SCHEMA.names}
    failures = disagreements = unanswered = 0
    kept = []
    j = 0
    for qid, a, b, reqs in pairs:
        mine, j = picks[j: j + len(reqs)], j + len(reqs)
        if any(p is _UNANSWERED for p in mine):
            unanswered += 1
            continue
        failures += sum(p is None for p in mine)
        if None in mine:
            continue
        if len(set(mine)) > 1:
            disagreements += 1
            continue
        plus = mine[0]
        minus = b if plus == a else a
        kept.append((qid, plus, minus))
        for name, value in (("query_id", qid), ("query", queries[qid]), ("c_plus_id", plus), ("c_minus_id", minus),
                            ("c_plus", passages[plus]), ("c_minus", passages[minus]),
                            ("request_keys", [r.key for r in reqs])):
            rows[name].append(value)
    table = pa.table(rows, schema=TRIPLES_SCHEMA)
    storage.write_table(out_uri, table)
    summary = {"pairs": len(pairs), "requests": len(jobs), "triples": table.num_rows, "parse_failures": failures,
               "swap_disagreements": disagreements, "unanswered_pairs": unanswered, "judged_by": judged,
               "passage1_rate": _passage1_rate(pairs, picks),
               "requests_sent": ledger.sent, "from_store": ledger.from_store, "tokens": ledger.tokens,
               "table": out_uri, "wall_s": round(time.perf_counter() - start, 2)}
    if config.engine == "recorded":
        summary["coverage"] = round((judged["recorded"] + judged["recorded_reversed"]) / max(1, len(jobs)), 4)
    if qrels is not None:
        summary["gold_agreement"] = gold_agreement(kept, qrels)
    return summary


def _passage1_rate(pairs: list, picks: list) -> float:
    """Share of answered pairs whose first-shown answer picks Passage #1 (the position-bias statistic)."""
    shown_first, answered, j = 0, 0, 0
    for _, a, _, reqs in pairs:
        p = picks[j]
        j += len(reqs)
        if p is not _UNANSWERED and p is not None:
            answered += 1
            shown_first += p == a
    return round(shown_first / max(1, answered), 3)
