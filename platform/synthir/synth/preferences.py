"""Syntriever stage-2 preferences: the LLM picks the more relevant of two of a query's top-K passages (P_compare).

For every query, ``pairs`` distinct pairs of its top-K candidates (default all C(K,2)) are asked at temperature 0
with the ``syntriever_compare`` prompt, named ``syntriever/compare/<query_id>/<doc_a>/<doc_b>`` (doc_a shown as
Passage #1). With ``position_swap`` each pair is also asked in the other order and kept only when both answers
agree, which cancels the LLM's position bias. Each kept verdict is a triple (q, c+, c-). Answers that cannot be
parsed are counted and kept in the table (``parse_failure``), never turned into a label.
"""

from __future__ import annotations

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

TRIPLES_SCHEMA = pa.schema([
    ("query_id", pa.string()), ("query", pa.string()), ("c_plus_id", pa.string()), ("c_minus_id", pa.string()),
    ("c_plus", pa.string()), ("c_minus", pa.string()), ("request_keys", pa.list_(pa.string())),
])


class PreferenceConfig(StrictModel):
    """Which pairs to compare and which engine answers them."""

    engine: Literal["batch", "http", "hf", "vllm"] = Field("hf", description="batch exports the requests as an OpenAI Batch file")
    model: str = Field("bundled:smollm2-135m-instruct", description="the judge model name (part of every request key)")
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
    def _hf_model(self) -> "PreferenceConfig":
        if self.engine == "hf" and self.hf.model != self.model:
            self.hf = self.hf.model_copy(update={"model": self.model})
        return self


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


def synthesize_preferences(topk: pa.Table, queries: dict[str, str], passages: dict[str, str],
                           config: PreferenceConfig, out_uri: str) -> dict:
    """Ask every comparison (store first), write the triples table to ``out_uri``; returns the summary."""
    start = time.perf_counter()
    store = ResponseStore(storage.join(config.storage, "responses"))
    ledger = Ledger()
    pairs = build_compare_requests(topk, queries, passages, config)
    flat = [r for _, _, _, reqs in pairs for r in reqs]
    answers = dict(zip((r.key for r in flat), answer_requests(store, flat, config, ledger))) if flat else {}
    rows = {name: [] for name in TRIPLES_SCHEMA.names}
    failures = disagreements = 0
    for qid, a, b, reqs in pairs:
        picks = []
        for req, (first, second) in zip(reqs, ((a, b), (b, a))):
            try:
                picks.append(first if parse_passage_choice(answers[req.key]) == 1 else second)
            except ParseFailure:
                failures += 1
                picks.append(None)
        if None in picks:
            continue
        if len(set(picks)) > 1:
            disagreements += 1
            continue
        plus = picks[0]
        minus = b if plus == a else a
        for name, value in (("query_id", qid), ("query", queries[qid]), ("c_plus_id", plus), ("c_minus_id", minus),
                            ("c_plus", passages[plus]), ("c_minus", passages[minus]),
                            ("request_keys", [r.key for r in reqs])):
            rows[name].append(value)
    table = pa.table(rows, schema=TRIPLES_SCHEMA)
    storage.write_table(out_uri, table)
    first_shown = sum(1 for (_, a, _, reqs) in pairs for req in reqs[:1]
                      if req.key in answers and _safe_choice(answers[req.key]) == 1)
    return {"pairs": len(pairs), "requests": len(flat), "triples": table.num_rows, "parse_failures": failures,
            "swap_disagreements": disagreements, "passage1_rate": round(first_shown / max(1, len(pairs)), 3),
            "requests_sent": ledger.sent, "from_store": ledger.from_store, "tokens": ledger.tokens,
            "table": out_uri, "wall_s": round(time.perf_counter() - start, 2)}


def _safe_choice(text: str) -> int | None:
    """The parsed pick, or None (for the position-bias statistic)."""
    try:
        return parse_passage_choice(text)
    except ParseFailure:
        return None
