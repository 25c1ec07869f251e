"""Syntriever stage-1 synthesis: q_cot, p+, p- and the p+ self-verification for every training query.

Requests are rendered from ``prompts/syntriever_*.txt`` and named ``syntriever/<task>/<query_id>``. Every
answer comes from the response store when it is there; what is missing goes to the engine:

* ``recorded``: the bundled real teacher answers for SciFact train (imported into the store, 0 requests sent);
* ``http``: any OpenAI-compatible endpoint (``synthir.llm.engines``), each answer stored as it arrives;
* ``batch``: the missing requests are exported as an OpenAI Batch input file, to be answered offline and
  brought back with ``import_answers`` (the run then completes from the store).

The output table has one row per training query: query, gold positives, q_cot, p+, p-, the verdict, and the
final positive and negative lists per the paper (a "no" moves p+ to the negatives). A verdict that cannot
be parsed is kept (``verdict`` null, ``parse_failure`` set) and p+ then joins neither list.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Literal

import pyarrow as pa
from pydantic import Field

from synthir import storage
from synthir.config import StrictModel, config_hash, execution_only
from synthir.data.beir import load_beir
from synthir.llm.batchfile import import_answers
from synthir.llm.engines import HTTPEngineConfig, VLLMEngineConfig
from synthir.llm.hf_engine import HFEngineConfig
from synthir.llm.parse import ParseFailure, parse_yes_no
from synthir.llm.prompts import load_prompt
from synthir.llm.store import ChatRequest, Ledger, ResponseStore
from synthir.manifest import Manifest
from synthir.runtime import RayConfig
from synthir.synth.answer import answer_requests

TASKS = ("cot", "positive", "negative", "relabel")
RECORDED_MODEL = "recorded-teacher"

STAGE1_SCHEMA = pa.schema([
    ("query_id", pa.string()), ("query", pa.string()), ("gold_ids", pa.list_(pa.string())),
    ("gold_passages", pa.list_(pa.string())), ("q_cot", pa.string()), ("p_plus", pa.string()),
    ("p_minus", pa.string()), ("verdict", pa.bool_()), ("parse_failure", pa.string()),
    ("positives", pa.list_(pa.string())), ("negatives", pa.list_(pa.string())),
    ("engine", pa.string()), ("model", pa.string()), ("request_keys", pa.list_(pa.string())),
])


class Stage1Config(StrictModel):
    """The stage-1 synthesis run."""

    dataset: str = "scifact"
    split: str = "train"
    engine: Literal["recorded", "batch", "http", "hf", "vllm"] = "recorded"
    model: str = Field(RECORDED_MODEL, description="the teacher model name (part of every request key)")
    storage: str = execution_only("./runs")
    limit: int | None = Field(None, ge=1, description="only the first N training queries (smoke runs)")
    max_tokens: int | None = Field(None, ge=1, description="override the prompts' max_tokens (part of every request key)")
    ray_actors: int = execution_only(0, ge=0, description="0: answer from the driver; N: a Ray Data pool of N engine actors (http.concurrency is per actor)")
    ray_actor_cpus: float = execution_only(1.0, gt=0, description="CPUs each engine actor reserves (an http actor mostly waits: 0.25 is plenty)")
    http: HTTPEngineConfig = HTTPEngineConfig()
    hf: HFEngineConfig = HFEngineConfig()
    vllm: VLLMEngineConfig | None = Field(None, description="engine vllm: model, parallelism, replicas (GPU)")
    ray: RayConfig = execution_only(RayConfig())


def recorded_teacher_dir() -> str:
    """The folder of the bundled SciFact teacher answers (OpenAI Batch files, README with their SOURCE)."""
    return str(resources.files("synthir") / "_data" / "scifact" / "teacher")


def import_recorded(store: ResponseStore, name: str, requests_uri: str, answers_uri: str) -> dict:
    """Import a recorded Batch answer file into ``store`` once (a marker ``imported/<name>.json`` says it was done)."""
    marker = storage.join(store.root, "imported", f"{name}.json")
    if storage.exists(marker):
        return storage.read_json(marker)
    counts = import_answers(requests_uri, answers_uri, store)
    storage.write_json(marker, counts)
    return counts


def recorded_teacher_files() -> tuple[str, str]:
    """The bundled SciFact stage-1 teacher files: (Batch requests, Batch answers)."""
    base = recorded_teacher_dir()
    return storage.join(base, "stage1-requests.jsonl.gz"), storage.join(base, "stage1-answers.jsonl.gz")


def build_requests(task: str, qid: str, model: str, max_tokens: int | None = None, **variables) -> ChatRequest:
    """The request for one task of one query, rendered from its prompt file."""
    prompt = load_prompt(f"syntriever_{task}")
    sampling = {**prompt.sampling, **({"max_tokens": max_tokens} if max_tokens else {})}
    return ChatRequest.make(f"syntriever/{task}/{qid}", model, prompt.messages(**variables), sampling)


def synthesize_stage1(config: Stage1Config) -> dict:
    """Build (or complete) the stage-1 table; returns the summary that is also in the manifest."""
    start = time.perf_counter()
    out_dir = storage.join(config.storage, "synth", f"syntriever-stage1-{config_hash(config)}")
    manifest = Manifest("synth/syntriever-stage1", config, out_dir)
    store = ResponseStore(storage.join(config.storage, "responses"))
    if config.engine == "recorded":
        if config.model != RECORDED_MODEL:
            raise ValueError(f"engine 'recorded' replays model {RECORDED_MODEL!r}, not {config.model!r}")
        req_uri, ans_uri = recorded_teacher_files()
        manifest.input("teacher_answers", ans_uri)
        import_recorded(store, "scifact-stage1", req_uri, ans_uri)
    ds = load_beir(config.dataset, splits=(config.split,))
    passages = ds.passages()
    qrels = ds.qrels_dict(config.split)
    queries = ds.split_queries(config.split)
    qids, texts = queries["id"].to_pylist(), queries["text"].to_pylist()
    if config.limit:
        qids, texts = qids[: config.limit], texts[: config.limit]
    ledger = Ledger()
    first = {task: [build_requests(task, q, config.model, config.max_tokens, question=t) for q, t in zip(qids, texts)]
             for task in ("cot", "positive", "negative")}
    answers = {task: answer_requests(store, reqs, config, ledger) for task, reqs in first.items()}
    relabel = [build_requests("relabel", q, config.model, config.max_tokens, question=t, passage=p)
               for q, t, p in zip(qids, texts, answers["positive"])]
    answers["relabel"] = answer_requests(store, relabel, config, ledger)

    rows = {name: [] for name in STAGE1_SCHEMA.names}
    relabeled = failures = 0
    for i, (qid, text) in enumerate(zip(qids, texts)):
        gold_ids = sorted(d for d, s in qrels[qid].items() if s > 0)
        gold = [passages[d] for d in gold_ids]
        cot, plus, minus = answers["cot"][i], answers["positive"][i], answers["negative"][i]
        try:
            verdict, failure = parse_yes_no(answers["relabel"][i]), None
        except ParseFailure as e:
            verdict, failure = None, f"{e.parser}: {answers['relabel'][i][:200]!r}"
            failures += 1
        relabeled += verdict is False
        positives = gold + ([plus] if verdict else []) + [cot]
        negatives = [minus] + ([plus] if verdict is False else [])
        for name, value in (("query_id", qid), ("query", text), ("gold_ids", gold_ids), ("gold_passages", gold),
                            ("q_cot", cot), ("p_plus", plus), ("p_minus", minus), ("verdict", verdict),
                            ("parse_failure", failure), ("positives", positives), ("negatives", negatives),
                            ("engine", config.engine), ("model", config.model),
                            ("request_keys", [first["cot"][i].key, first["positive"][i].key, first["negative"][i].key, relabel[i].key])):
            rows[name].append(value)
    table = pa.table(rows, schema=STAGE1_SCHEMA)
    table_uri = storage.join(out_dir, "stage1.parquet")
    storage.write_table(table_uri, table)
    summary = {"rows": table.num_rows, "requests_sent": ledger.sent, "from_store": ledger.from_store,
               "relabeled": relabeled, "relabel_rate": relabeled / max(1, table.num_rows - failures),
               "parse_failures": failures, "tokens": ledger.tokens, "table": table_uri,
               "wall_s": round(time.perf_counter() - start, 2)}
    manifest.count("rows", table.num_rows)
    manifest.output("stage1", table_uri)
    manifest.data["summary"] = summary
    manifest.write()
    return summary
