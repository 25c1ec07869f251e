"""Synthesis at corpus scale: one prompt over every row of a Parquet corpus, streamed through Ray Data.

The pipeline never holds the corpus: ``read_parquet`` -> streaming repartition into ``batch_size``-row blocks ->
render each row's request (stateless tasks) -> an autoscaling pool of engine actors (``ActorPoolStrategy(min_size,
max_size)``) that answers from the response store first and sends only what it lacks -> ``write_parquet`` by many
write tasks into ``<output>/_attempts/<attempt>/``. Every answer is written to the store the moment it arrives, one
object per answer under 256 key-prefix shards (``llm/store.py``), so writers never contend and a killed job loses
only the requests in flight.

A finished run is published by ``_SUCCESS.json`` (written last) naming its parts; readers (:func:`read_output`) take
only those, so a half-written attempt is never read. A rerun after a crash starts a new attempt in which every
answered row comes from the store (0 requests for it), checks that each input id appears exactly once, then
publishes and removes the older attempts.

Rows out: the input id, ``custom_id`` (``<task>/<id>``), ``request_key``, ``content``, ``source`` (``engine``:
answered by this run, ``store``: already answered), ``error``, and the prompt, model and sampling that made them.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from synthir import storage
from synthir.config import StrictModel, config_hash, execution_only
from synthir.llm.engines import HTTPEngineConfig, VLLMEngineConfig, build_vllm_processor
from synthir.llm.prompts import load_prompt
from synthir.llm.stage import EngineStageConfig, _AnswerMissingHTTP, _requests
from synthir.llm.store import ChatRequest, ResponseStore
from synthir.runtime import RayConfig, init_ray

MARKER = "_SUCCESS.json"
OUTPUT_SCHEMA = pa.schema([
    ("id", pa.string()), ("custom_id", pa.string()), ("request_key", pa.string()), ("content", pa.string()),
    ("source", pa.string()), ("error", pa.string()), ("prompt", pa.string()), ("model", pa.string()),
    ("sampling", pa.string()),
])


class CorpusSynthConfig(StrictModel):
    """One prompt over every row of a Parquet corpus; settings that only say how it runs are execution-only."""

    input: str = Field(..., description="Parquet or JSON Lines (.jsonl[.gz]) file or folder, path or s3:// URI, one row per "
                       "chunk or document; or bundled:<dataset> for a bundled corpus (ids in column _id)")
    id_column: str = Field("id", description="the column naming each row (unique; part of every custom_id)")
    prompt: str = Field(..., description="prompt name: prompts/<name>.txt")
    columns: dict[str, str] = Field(default_factory=dict, description="prompt variable -> input column, e.g. {context: text}")
    constants: dict[str, Any] = Field(default_factory=dict, description="prompt variable -> fixed value, e.g. {num_sequences: 10}")
    task: str | None = Field(None, description="custom_id prefix (default corpus/<prompt>): custom_id = <task>/<id>")
    model: str = Field(..., description="the LLM's model name (part of every request key)")
    max_tokens: int | None = Field(None, ge=1, description="override the prompt's max_tokens (part of every request key)")
    engine: Literal["http", "vllm"] = "http"
    output: str | None = execution_only(None, description="output folder; default <storage>/synth/corpus-<prompt>-<config hash>")
    storage: str = execution_only("./runs", description="root of the response store (<storage>/responses) and default output")
    min_actors: int = execution_only(1, ge=1, description="engine actors kept up (http)")
    max_actors: int | None = execution_only(None, ge=1, description="autoscale up to this many actors (default min_actors)")
    cpus_per_actor: float = execution_only(0.25, gt=0, description="CPUs reserved per http actor (it mostly waits on the network)")
    batch_size: int = execution_only(256, ge=1, description="rows per block and per actor call")
    rows_per_part: int = execution_only(50_000, ge=1, description="rows per output Parquet part (at least)")
    http: HTTPEngineConfig = HTTPEngineConfig()
    vllm: VLLMEngineConfig | None = Field(None, description="engine vllm: model, parallelism, replicas (GPU)")
    ray: RayConfig = execution_only(RayConfig())

    @model_validator(mode="after")
    def _check(self) -> "CorpusSynthConfig":
        if self.max_actors is not None and self.max_actors < self.min_actors:
            raise ValueError(f"max_actors ({self.max_actors}) is below min_actors ({self.min_actors})")
        if self.engine == "vllm" and self.vllm is None:
            raise ValueError("engine 'vllm' needs a vllm section (vllm.model at least)")
        prompt = load_prompt(self.prompt)
        given = set(self.columns) | set(self.constants)
        if set(self.columns) & set(self.constants):
            raise ValueError(f"variables {sorted(set(self.columns) & set(self.constants))} are in both columns and constants")
        if given != set(prompt.variables):
            raise ValueError(f"prompt {self.prompt!r} takes variables {sorted(prompt.variables)}; columns + constants give "
                             f"{sorted(given)}")
        return self

    @property
    def task_prefix(self) -> str:
        """The custom_id prefix of this run's requests."""
        return self.task or f"corpus/{self.prompt}"

    @property
    def output_uri(self) -> str:
        """Where the parts and the marker go."""
        return self.output or storage.join(self.storage, "synth", f"corpus-{self.prompt}-{config_hash(self)}")


def resolve_input(uri: str) -> str:
    """The input's URI: ``bundled:<dataset>`` names the corpus file of a bundled dataset."""
    if not uri.startswith("bundled:"):
        return uri
    from synthir.data.beir import bundled_root

    return storage.join(bundled_root(uri[len("bundled:"):]), "corpus.jsonl.gz")


def read_input(config: "CorpusSynthConfig"):
    """The input rows as a Ray Data dataset with only the id and prompt columns (read in blocks, never all at once)."""
    import ray.data

    uri = resolve_input(config.input)
    fs, path = storage.filesystem(uri)
    wanted = [config.id_column, *dict.fromkeys(config.columns.values())]
    try:
        if path.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
            gz = {"compression": "gzip"} if path.endswith(".gz") else None
            ds = ray.data.read_json(path, filesystem=fs, arrow_open_stream_args=gz)  # pyarrow reads JSON Lines
        else:
            ds = ray.data.read_parquet(path, filesystem=fs)
        names = ds.schema().names  # Parquet: from the footers; JSON: the first block
    except Exception as e:  # a missing or unreadable file: name the input
        raise ValueError(f"{config.input}: cannot read it: {type(e).__name__}: {str(e)[:500]}") from None
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ValueError(f"{config.input}: no column(s) {missing} (it has {names}); set id_column / columns")
    ds = ds.select_columns(wanted)  # pushed down into the read: other columns are never loaded
    return ds, ds.count()


def _render(batch: pa.Table, config: CorpusSynthConfig) -> dict:
    """Ray Data task: one chat request per input row (custom_id, model, messages, sampling, key)."""
    prompt = load_prompt(config.prompt)
    sampling = {**prompt.sampling, **({"max_tokens": config.max_tokens} if config.max_tokens else {})}
    ids = [str(i) for i in batch[config.id_column].to_pylist()]
    values = {var: batch[col].to_pylist() for var, col in config.columns.items()}
    out: dict[str, list] = {"id": ids, "custom_id": [], "model": [], "messages": [], "sampling": [], "request_key": []}
    for i, row_id in enumerate(ids):
        variables = {**config.constants, **{v: vals[i] for v, vals in values.items()}}
        missing = [v for v in config.columns if variables[v] is None]
        if missing:
            raise ValueError(f"{config.input}: row {row_id!r} has no value in column(s) "
                             f"{[config.columns[v] for v in missing]}")
        request = ChatRequest.make(f"{config.task_prefix}/{row_id}", config.model, prompt.messages(**variables), sampling)
        out["custom_id"].append(request.custom_id)
        out["model"].append(request.model)
        out["messages"].append(json.dumps([{"role": r, "content": c} for r, c in request.messages]))
        out["sampling"].append(json.dumps(dict(request.sampling), sort_keys=True))
        out["request_key"].append(request.key)
    return out


def _rows(batch: dict, prompt: str, contents: list[str], sources: list[str], errors: list[str]) -> pa.Table:
    return pa.table({"id": batch["id"], "custom_id": batch["custom_id"], "request_key": batch["request_key"],
                     "content": contents, "source": sources, "error": errors, "prompt": [prompt] * len(contents),
                     "model": batch["model"], "sampling": batch["sampling"]}, schema=OUTPUT_SCHEMA)


class _AnswerRowsHTTP(_AnswerMissingHTTP):
    """Ray Data async actor: the stage's store-first http engine, returning each row's answer."""

    def __init__(self, config: EngineStageConfig, store_root: str, prompt: str):
        super().__init__(config, store_root)
        self.prompt = prompt

    async def __call__(self, batch: dict) -> pa.Table:
        requests, records, answers, failed = await self.answer_batch(batch)
        contents, sources, errors = [], [], []
        for request, record in zip(requests, records):
            if record is not None:
                contents.append(record["content"]), sources.append("store"), errors.append("")
            elif request.key in answers:
                contents.append(answers[request.key]), sources.append("engine"), errors.append("")
            else:
                contents.append(None), sources.append("engine"), errors.append(failed.get(request.custom_id, "no answer"))
        return _rows(batch, self.prompt, contents, sources, errors)


def _lookup_store(batch: dict, store_root: str) -> dict:
    """Ray Data task (vllm path): each row's stored answer, or none."""
    records = ResponseStore(store_root).get_many(_requests(batch))
    return {**batch, "content": [r["content"] if r else "" for r in records], "stored": [r is not None for r in records]}


def _answer_vllm(ds, config: CorpusSynthConfig, store_root: str, processor=None):
    """The vllm path: stored rows pass through; the rest go through a ``ray.data.llm`` processor and into the store."""
    looked_up = ds.map_batches(_lookup_store, fn_kwargs={"store_root": store_root}, batch_size=config.batch_size)
    prompt = config.prompt

    def stored(batch: dict) -> pa.Table:
        n = len(batch["id"])
        return _rows(batch, prompt, list(batch["content"]), ["store"] * n, [""] * n)

    def to_engine(row: dict) -> dict:
        return {"custom_id": row["custom_id"], "id": row["id"], "model": row["model"], "request_key": row["request_key"],
                "messages_json": row["messages"], "sampling_json": row["sampling"],
                "messages": json.loads(row["messages"]), "sampling": json.loads(row["sampling"])}

    def put(batch: dict) -> pa.Table:
        store = ResponseStore(store_root)
        requests = [ChatRequest.make(c, m, json.loads(msg), json.loads(s)) for c, m, msg, s in
                    zip(batch["custom_id"], batch["model"], batch["messages_json"], batch["sampling_json"])]
        for request, content, usage in zip(requests, batch["content"], batch["usage"]):
            store.put(request, content or "", {k: int(v or 0) for k, v in (usage or {}).items()}, source=f"vllm:{config.vllm.model}")
        n = len(requests)
        return _rows({**batch, "sampling": batch["sampling_json"]}, prompt, list(batch["content"]), ["engine"] * n, [""] * n)

    processor = processor or build_vllm_processor(config.vllm, keep=("id", "model", "request_key", "messages_json", "sampling_json"))
    done = looked_up.filter(lambda row: row["stored"]).map_batches(stored, batch_format="numpy")
    new = processor(looked_up.filter(lambda row: not row["stored"]).map(to_engine)).map_batches(put, batch_format="numpy")
    return done.union(new)


def read_output(uri: str) -> pa.Table:
    """The published rows of a finished corpus synthesis (only the parts its marker names)."""
    marker = storage.join(uri, MARKER)
    if not storage.exists(marker):
        raise storage.StorageError(f"{uri}: no finished corpus synthesis here ({MARKER} missing)")
    meta = storage.read_json(marker)
    tables = [storage.read_table(storage.join(uri, part)) for part in meta["parts"]]
    return pa.concat_tables(tables) if tables else OUTPUT_SCHEMA.empty_table()


def _check_attempt(attempt_uri: str, expected_rows: int, where: str) -> dict:
    """Counts of a finished attempt; raises when an id is missing, repeated, or a request failed."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    fs, path = storage.filesystem(attempt_uri)
    table = pads.dataset(path, filesystem=fs, format="parquet").to_table(columns=["id", "source", "error"])
    ids = table["id"]
    distinct = pc.count_distinct(ids).as_py()
    if distinct != table.num_rows:
        counts = pc.value_counts(ids)
        repeated = [v["values"] for v in counts.to_pylist() if v["counts"] > 1][:5]
        raise ValueError(f"{where}: {table.num_rows - distinct} repeated ids in the input column (e.g. {repeated}); ids must be unique")
    if table.num_rows != expected_rows:
        raise RuntimeError(f"{attempt_uri}: {table.num_rows} rows written for {expected_rows} input rows")
    failed = pc.sum(pc.not_equal(table["error"], "")).as_py() or 0
    sent = pc.sum(pc.equal(table["source"], "engine")).as_py() or 0
    return {"rows": table.num_rows, "requests_sent": int(sent) - int(failed), "from_store": table.num_rows - int(sent),
            "failed": int(failed)}


def synthesize_corpus(config: CorpusSynthConfig, processor=None) -> dict:
    """Run (or finish) one corpus synthesis; returns the summary that ``_SUCCESS.json`` also holds."""
    out = config.output_uri
    marker = storage.join(out, MARKER)
    key = config_hash(config)
    if storage.exists(marker):
        meta = storage.read_json(marker)
        if meta.get("config_hash") != key:
            raise ValueError(f"{out} holds the output of another config (hash {meta.get('config_hash')}, this one {key}); "
                             f"choose another output folder")
        return {**meta, "requests_sent": 0, "from_store": meta["rows"], "reused": True}
    start = time.perf_counter()
    init_ray(config.ray)
    ds, input_rows = read_input(config)
    ds = ds.repartition(target_num_rows_per_block=config.batch_size)  # streaming: no shuffle, no barrier
    ds = ds.map_batches(_render, fn_kwargs={"config": config}, batch_format="pyarrow", batch_size=config.batch_size)
    store_root = storage.join(config.storage, "responses")
    if config.engine == "http":
        stage = EngineStageConfig(kind="http", num_actors=config.min_actors, max_actors=config.max_actors,
                                  num_cpus_per_actor=config.cpus_per_actor, batch_size=config.batch_size, http=config.http)
        ds = ds.map_batches(
            _AnswerRowsHTTP, fn_constructor_kwargs={"config": stage, "store_root": store_root, "prompt": config.prompt},
            batch_size=config.batch_size, compute=stage.pool(), num_cpus=config.cpus_per_actor)
    else:
        ds = _answer_vllm(ds, config, store_root, processor)
    attempt = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    attempt_uri = storage.join(out, "_attempts", attempt)
    out_fs, attempt_path = storage.filesystem(attempt_uri)
    ds.write_parquet(attempt_path, filesystem=out_fs, min_rows_per_file=config.rows_per_part)  # many write tasks, one part each
    counts = _check_attempt(attempt_uri, input_rows, config.input)
    if counts["failed"]:
        raise RuntimeError(f"{counts['failed']} of {counts['rows']} requests failed after retries; the answers so far are "
                           f"stored, rerun to send only the rest (partial output: {attempt_uri})")
    parts = sorted(storage.join("_attempts", attempt, u.rsplit("/", 1)[-1]) for u in storage.list_files(attempt_uri, ".parquet"))
    wall = time.perf_counter() - start
    meta = {**counts, "output": out, "parts": parts, "attempt": attempt, "config_hash": key, "prompt": config.prompt,
            "model": config.model, "engine": config.engine, "input": config.input, "wall_s": round(wall, 2),
            "rows_per_s": round(counts["rows"] / wall, 1)}
    storage.write_json(marker, meta)  # written last: the output exists from here on
    for old in {u.split("/_attempts/", 1)[1].split("/", 1)[0] for u in storage.list_files(storage.join(out, "_attempts"))} - {attempt}:
        storage.delete(storage.join(out, "_attempts", old))
    return {**meta, "reused": False}
