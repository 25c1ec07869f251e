"""Generative-retrieval synthesis (Wen et al. 2025): keywords, metadata and four kinds of queries per document.

Requests are rendered from ``prompts/genret_*.txt`` and named ``genret/<task>/<doc_id>`` (sentence-level:
``genret/sentence/<doc_id>/<i>``). Tasks, in dependency order:

* ``keywords``: the keyword list that becomes the document's semantic ID;
* ``metadata``: "Name: value" lines for the dataset's attributes (``METADATA_SCHEMAS``), judged from the text;
  or a user ``metadata_file`` instead (JSONL: ``_id`` plus one key per attribute), which needs no LLM;
* ``queries`` (chunk-level, m_c per document context), ``sentence`` (m_s per sentence), ``constrained`` (m_i per
  document, each using at least one metadata attribute) and ``query_answer`` (hard query + short answer pairs
  for the preference stage).

The LLM reads ``synthesis_context`` (the first ``corpus.context_words`` words of the document); nothing is ever
derived from test queries or qrels. Every answer comes from the response store when it is there; what is
missing goes to the configured engine (``recorded``: the bundled PIR teacher, 0 requests; ``http``, ``hf``,
``vllm``; ``batch`` exports an OpenAI Batch file and stops). Answers that do not parse are counted per task
and the document simply contributes nothing for that task; a document whose keywords do not parse gets its
doc id as its semantic ID (counted as ``keyword_fallbacks``).
"""

from __future__ import annotations

import json
import time
from importlib import resources
from typing import Literal

import pyarrow as pa
from pydantic import Field, model_validator

from synthir import storage
from synthir.config import StrictModel, config_hash, execution_only
from synthir.data.beir import DataError, iter_json_objects, load_beir
from synthir.generative.corpus import CorpusConfig, collapsed_dataset, split_sentences, synthesis_context
from synthir.llm.engines import HTTPEngineConfig, VLLMEngineConfig
from synthir.llm.hf_engine import HFEngineConfig
from synthir.llm.parse import ParseFailure, parse_attributes, parse_dash_list, parse_keywords, parse_query_answer_pairs
from synthir.llm.prompts import GENRET_CONSTRAINT_EXAMPLES, load_prompt
from synthir.llm.store import ChatRequest, Ledger, ResponseStore
from synthir.manifest import Manifest
from synthir.runtime import RayConfig
from synthir.synth.answer import answer_requests
from synthir.synth.syntriever import RECORDED_MODEL, import_recorded

Task = Literal["keywords", "metadata", "queries", "sentence", "constrained", "query_answer"]
TASKS: tuple[str, ...] = ("keywords", "metadata", "queries", "sentence", "constrained", "query_answer")
QUERY_KINDS = ("queries", "sentence", "constrained", "query_answer")

# What the metadata prompt asks for, per dataset: the attributes of the paper's setup (AllSides: title and
# political polarity, plus a topic; AGNews: location and topic) and one sentence on what each means.
METADATA_SCHEMAS: dict[str, tuple[tuple[str, ...], str]] = {
    "allsides": (("Title", "Political polarity", "Topic"),
                 "Political polarity is left, center or right: the slant of the article. Topic is one to three words."),
    "agnews": (("Location", "Topic"),
               "Location is the country where the reported events mainly take place, or World. Topic is a short "
               "phrase naming the news subtopic."),
}

DOCUMENTS_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("keywords", pa.list_(pa.string())), ("metadata", pa.string()),
    ("context", pa.string()),
])
QUERIES_SCHEMA = pa.schema([
    ("query_id", pa.string()), ("doc_id", pa.string()), ("kind", pa.string()), ("query", pa.string()),
    ("answer", pa.string()),
])


class GenretSynthConfig(StrictModel):
    """The generative-retrieval synthesis run (paper: m_c = m_s = m_i = 10 at temperature 0.7)."""

    dataset: str = Field("allsides", description="a bundled PIR task (allsides, agnews) or a BEIR-layout path/URI")
    engine: Literal["recorded", "batch", "http", "hf", "vllm"] = "recorded"
    model: str = Field(RECORDED_MODEL, description="the teacher model name (part of every request key)")
    tasks: list[Task] = Field(default_factory=lambda: list(TASKS), description="tasks to run; a query kind left out "
                              "gives no queries (keywords are needed for semantic IDs, metadata for constrained)")
    queries_per_context: int = Field(5, ge=1, description="m_c (paper 10; the recorded teacher wrote 5)")
    queries_per_sentence: int = Field(1, ge=1, description="m_s (paper 10; the recorded teacher wrote 1)")
    constrained_per_doc: int = Field(5, ge=1, description="m_i (paper 10; the recorded teacher wrote 5)")
    query_answer_per_doc: int = Field(5, ge=1, description="query-answer pairs asked for ('less than N+1')")
    metadata_attributes: list[str] | None = Field(None, description="attributes to extract; None: the dataset's "
                                                  "METADATA_SCHEMAS entry")
    metadata_guidance: str | None = Field(None, description="what the attributes mean, for the metadata prompt")
    metadata_file: str | None = Field(None, description="user metadata (JSONL: _id + attribute keys) instead of the LLM")
    constraint_example: str | None = Field(None, description="the constrained prompt's example paragraph; None: "
                                           "the paper's for this dataset (GENRET_CONSTRAINT_EXAMPLES)")
    max_tokens: int = Field(1024, ge=1, description="max_tokens of every request (part of every request key)")
    corpus: CorpusConfig = CorpusConfig()
    storage: str = execution_only("./runs")
    documents: list[str] | None = Field(None, description="only these documents (a subsampled run); None: every one")
    ray_actors: int = execution_only(0, ge=0, description="0: answer from the driver; N: a Ray Data pool of N engine actors")
    ray_actor_cpus: float = execution_only(1.0, gt=0)
    http: HTTPEngineConfig = HTTPEngineConfig()
    hf: HFEngineConfig = HFEngineConfig()
    vllm: VLLMEngineConfig | None = None
    ray: RayConfig = execution_only(RayConfig())

    @model_validator(mode="after")
    def _consistent(self) -> "GenretSynthConfig":
        if self.engine == "recorded" and self.model != RECORDED_MODEL:
            raise ValueError(f"engine 'recorded' replays model {RECORDED_MODEL!r}, not {self.model!r}")
        if "constrained" in self.tasks and "metadata" not in self.tasks and not self.metadata_file:
            raise ValueError("task 'constrained' needs metadata: keep task 'metadata' or give metadata_file")
        return self

    def attributes(self) -> tuple[tuple[str, ...], str]:
        """(metadata attribute names, guidance) for this dataset."""
        default = METADATA_SCHEMAS.get(self.dataset_name(), ((), ""))
        names = tuple(self.metadata_attributes) if self.metadata_attributes else default[0]
        if not names and "metadata" in self.tasks and not self.metadata_file:
            raise ValueError(f"dataset {self.dataset!r} has no known metadata attributes: set synth.metadata_attributes")
        return names, self.metadata_guidance if self.metadata_guidance is not None else default[1]

    def dataset_name(self) -> str:
        """The dataset's short name (the last path component)."""
        return self.dataset.rstrip("/").rsplit("/", 1)[-1]


def recorded_teacher_files(dataset: str) -> tuple[str, str] | None:
    """The bundled PIR teacher files for ``dataset`` (Batch requests, Batch answers), or None if none is recorded."""
    base = resources.files("synthir") / "_data" / "pir" / "teacher" / dataset
    if not (base / "genret-answers.jsonl.gz").is_file():
        return None
    return str(base / "genret-requests.jsonl.gz"), str(base / "genret-answers.jsonl.gz")


def genret_request(task: str, name: str, model: str, max_tokens: int, **variables) -> ChatRequest:
    """The request ``genret/<task>/<name>`` rendered from the task's prompt file."""
    prompt = load_prompt({"queries": "genret_queries", "sentence": "genret_queries", "constrained": "genret_constrained_queries",
                          "keywords": "genret_keywords", "metadata": "genret_metadata",
                          "query_answer": "genret_query_answer"}[task])
    return ChatRequest.make(f"genret/{task}/{name}", model, prompt.messages(**variables),
                            {**prompt.sampling, "max_tokens": max_tokens})


def format_metadata(metadata: dict[str, str]) -> str:
    """Metadata as the constrained prompt shows it: one "Name: value" line per attribute."""
    return "\n".join(f"{k}: {v}" for k, v in metadata.items())


def read_metadata_file(uri: str, names: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """``{doc_id: {attribute: value}}`` from a JSONL file (``_id`` + attribute keys; None: every other key)."""
    out = {}
    for lineno, row in iter_json_objects(uri):
        if not isinstance(row.get("_id"), str):
            raise DataError(uri, "missing or not a string", lineno, "_id")
        keys = names or tuple(k for k in row if k != "_id")
        out[row["_id"]] = {k: str(row[k]) for k in keys if row.get(k) not in (None, "")}
    return out


def _parse(parser, answers: list[str], failures: dict[str, int], task: str) -> list:
    parsed = []
    for text in answers:
        try:
            parsed.append(parser(text))
        except ParseFailure:
            failures[task] = failures.get(task, 0) + 1
            parsed.append(None)
    return parsed


def synthesize_genret(config: GenretSynthConfig) -> dict:
    """Build (or complete) the documents and queries tables; returns the summary that is also in the manifest."""
    start = time.perf_counter()
    out_dir = storage.join(config.storage, "synth", f"genret-{config.dataset_name()}-{config_hash(config)}")
    manifest = Manifest("synth/genret", config, out_dir)
    store = ResponseStore(storage.join(config.storage, "responses"))
    if config.engine == "recorded":
        files = recorded_teacher_files(config.dataset_name())
        if files is None:
            raise ValueError(f"no recorded teacher answers for dataset {config.dataset!r} (recorded: allsides, agnews)")
        manifest.input("teacher_answers", files[1])
        import_recorded(store, f"pir-{config.dataset_name()}-genret", *files)
    ds = load_beir(f"pir/{config.dataset}" if "/" not in config.dataset else config.dataset, splits=("test",))
    if config.corpus.collapse_identical:  # one synthesis per distinct text: the twins are one document
        ds, _ = collapsed_dataset(ds)
    doc_ids, texts = ds.corpus["id"].to_pylist(), list(ds.passages().values())
    if config.documents is not None:
        wanted = set(config.documents)
        missing = sorted(wanted - set(doc_ids))
        if missing:
            raise ValueError(f"synth.documents: {len(missing)} ids are not documents of {config.dataset} "
                             f"(after collapsing identical texts: {config.corpus.collapse_identical}), e.g. {missing[:3]}")
        doc_ids, texts = zip(*[(d, t) for d, t in zip(doc_ids, texts) if d in wanted]) if wanted else ((), ())
        doc_ids, texts = list(doc_ids), list(texts)
    contexts = [synthesis_context(t, config.corpus.context_words) for t in texts]
    names, guidance = config.attributes()
    ledger, failures = Ledger(), {}
    kw = dict(model=config.model, max_tokens=config.max_tokens)

    def run(requests: list[ChatRequest]) -> list[str]:
        return answer_requests(store, requests, config, ledger) if requests else []

    keywords: list[list[str] | None] = [None] * len(doc_ids)
    if "keywords" in config.tasks:
        reqs = [genret_request("keywords", d, context=c, **kw) for d, c in zip(doc_ids, contexts)]
        keywords = _parse(parse_keywords, run(reqs), failures, "keywords")
    metadata: list[dict[str, str] | None] = [None] * len(doc_ids)
    if config.metadata_file:
        given = read_metadata_file(config.metadata_file, names)
        metadata = [given.get(d) or None for d in doc_ids]
    elif "metadata" in config.tasks:
        reqs = [genret_request("metadata", d, attributes=", ".join(names), guidance=guidance, context=c, **kw)
                for d, c in zip(doc_ids, contexts)]
        metadata = _parse(lambda t: parse_attributes(t, names), run(reqs), failures, "metadata")

    rows: dict[str, list] = {name: [] for name in QUERIES_SCHEMA.names}

    def add(kind: str, doc_id: str, n: int, query: str, answer: str | None = None) -> None:
        for name, value in zip(QUERIES_SCHEMA.names, (f"{kind}/{doc_id}/{n}", doc_id, kind, query, answer)):
            rows[name].append(value)

    if "queries" in config.tasks:
        reqs = [genret_request("queries", d, num_sequences=config.queries_per_context, context=c, **kw)
                for d, c in zip(doc_ids, contexts)]
        for d, qs in zip(doc_ids, _parse(parse_dash_list, run(reqs), failures, "queries")):
            for n, q in enumerate(qs or []):
                add("queries", d, n, q)
    if "sentence" in config.tasks:
        owners, reqs = [], []
        for d, c in zip(doc_ids, contexts):
            for i, s in enumerate(split_sentences(c, config.corpus.min_sentence_words, config.corpus.sentences_per_doc)):
                owners.append((d, i))
                reqs.append(genret_request("sentence", f"{d}/{i}", num_sequences=config.queries_per_sentence, context=s, **kw))
        for (d, i), qs in zip(owners, _parse(parse_dash_list, run(reqs), failures, "sentence")):
            for n, q in enumerate(qs or []):
                add("sentence", d, i * config.queries_per_sentence + n, q)
    if "constrained" in config.tasks:
        example = config.constraint_example or GENRET_CONSTRAINT_EXAMPLES.get(config.dataset_name(),
                                                                             GENRET_CONSTRAINT_EXAMPLES["news"])
        with_meta = [(d, c, m) for d, c, m in zip(doc_ids, contexts, metadata) if m]
        reqs = [genret_request("constrained", d, num_sequences=config.constrained_per_doc, example=example,
                               metadata=format_metadata(m), context=c, **kw) for d, c, m in with_meta]
        for (d, _, _), qs in zip(with_meta, _parse(parse_dash_list, run(reqs), failures, "constrained")):
            for n, q in enumerate(qs or []):
                add("constrained", d, n, q)
    if "query_answer" in config.tasks:
        reqs = [genret_request("query_answer", d, num_sequences=config.query_answer_per_doc + 1, context=c, **kw)
                for d, c in zip(doc_ids, contexts)]
        for d, pairs in zip(doc_ids, _parse(parse_query_answer_pairs, run(reqs), failures, "query_answer")):
            for n, (q, a) in enumerate(pairs or []):
                add("query_answer", d, n, q, a)

    documents = pa.table({"doc_id": doc_ids, "keywords": keywords,
                          "metadata": [json.dumps(m, ensure_ascii=False) if m else None for m in metadata],
                          "context": contexts}, schema=DOCUMENTS_SCHEMA)
    queries = pa.table(rows, schema=QUERIES_SCHEMA)
    storage.write_table(storage.join(out_dir, "documents.parquet"), documents)
    storage.write_table(storage.join(out_dir, "queries.parquet"), queries)
    kinds = queries["kind"].to_pylist()
    summary = {"documents": len(doc_ids), "queries": {k: kinds.count(k) for k in QUERY_KINDS},
               "parse_failures": failures, "requests_sent": ledger.sent, "from_store": ledger.from_store,
               "tokens": ledger.tokens, "engine": config.engine, "tasks": list(config.tasks),
               "documents_table": storage.join(out_dir, "documents.parquet"),
               "queries_table": storage.join(out_dir, "queries.parquet"), "wall_s": round(time.perf_counter() - start, 2)}
    manifest.count("documents", len(doc_ids))
    manifest.count("queries", queries.num_rows)
    manifest.output("documents", summary["documents_table"])
    manifest.output("queries", summary["queries_table"])
    manifest.data["summary"] = summary
    manifest.write()
    return summary
