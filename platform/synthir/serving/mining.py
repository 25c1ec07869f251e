"""Online top-K mining: searches logged as Parquet parts, and a log turned into the next round's training requests.

Each ingress replica buffers one row per query (time, retriever, model version, a hash of the query, the query
text only when ``store_queries`` is on, the top-K ids and scores) and writes a part when ``flush_rows`` rows wait or
``flush_interval_s`` has passed: ``<log>/part-<UTC time>-<replica>-<seq>.parquet``, each written atomically, so a
reader sees whole parts only and replicas never write the same file. ``to_comparisons`` reads a log back and asks
the Syntriever P_compare judge about pairs of each query's logged top-K through the existing synthesis engines
(``synth/preferences.py``): production traffic becomes stage-2 triples, or an OpenAI Batch file to send.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from datetime import datetime, timezone

import pyarrow as pa

from synthir import storage
from synthir.serving.config import MiningConfig

log = logging.getLogger(__name__)

LOG_SCHEMA = pa.schema([
    ("time", pa.timestamp("ms", tz="UTC")), ("retriever", pa.string()), ("model_version", pa.string()),
    ("query_hash", pa.string()), ("query", pa.string()), ("doc_ids", pa.list_(pa.string())),
    ("scores", pa.list_(pa.float32())),
])


def query_hash(text: str) -> str:
    """The id a logged query goes by (sha256 of its text, 16 hex digits)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class MiningLog:
    """A replica's buffer of logged searches, flushed as atomic Parquet parts (by size, by time, and at close)."""

    def __init__(self, config: MiningConfig, replica: str | None = None):
        self.config = config
        self.replica = (replica or uuid.uuid4().hex[:8]).replace("/", "_").replace("#", "_")
        self.rows: list[dict] = []
        self.seq = 0
        self.written = 0
        self._first_row_at: float | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None

    def add(self, retriever: str, version: str, queries: list[str], hits: list[list[dict]]) -> None:
        """Buffer one row per query of a search (from a coroutine: the first call starts the flush loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())
        now = datetime.now(timezone.utc)
        for text, row in zip(queries, hits):
            top = row[: self.config.top_k]
            self.rows.append({"time": now, "retriever": retriever, "model_version": version, "query_hash": query_hash(text),
                              "query": text if self.config.store_queries else None,
                              "doc_ids": [h["id"] for h in top], "scores": [h["score"] for h in top]})
        if self._first_row_at is None and self.rows:
            self._first_row_at = time.monotonic()

    def due(self) -> bool:
        """True when the buffer should be written now."""
        if not self.rows:
            return False
        return len(self.rows) >= self.config.flush_rows or time.monotonic() - self._first_row_at >= self.config.flush_interval_s

    def _take(self) -> tuple[str, pa.Table] | None:
        if not self.rows:
            return None
        rows, self.rows, self._first_row_at = self.rows, [], None
        self.seq += 1
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        uri = storage.join(self.config.uri, f"part-{stamp}-{self.replica}-{self.seq:06d}.parquet")
        return uri, pa.Table.from_pylist(rows, schema=LOG_SCHEMA)

    async def flush(self) -> None:
        """Write the buffered rows as one part (in a thread, so the replica keeps serving)."""
        async with self._lock:
            taken = self._take()
            if taken is not None:
                await asyncio.to_thread(storage.write_table, *taken)
                self.written += taken[1].num_rows

    def flush_sync(self) -> None:
        """Write what is buffered now (replica shutdown)."""
        taken = self._take()
        if taken is not None:
            storage.write_table(*taken)
            self.written += taken[1].num_rows

    async def run(self) -> None:
        """Background loop: write a part whenever one is due."""
        while True:
            await asyncio.sleep(min(1.0, self.config.flush_interval_s / 2))
            if self.due():
                try:
                    await self.flush()
                except Exception:  # a storage hiccup must not stop serving; the rows are lost, and it is logged
                    log.exception("mining log: writing a part to %s failed", self.config.uri)


def read_log(uri: str) -> pa.Table:
    """Every part of a mining log as one table (whole parts only: each was written atomically)."""
    parts = storage.list_files(uri, ".parquet")
    if not parts:
        raise storage.StorageError(f"{uri}: no mining-log parts (part-*.parquet) here")
    tables = []
    for part in parts:
        table = storage.read_table(part)
        if not table.schema.equals(LOG_SCHEMA, check_metadata=False):
            raise storage.StorageError(f"{part}: not a synthir mining-log part (columns {table.schema.names})")
        tables.append(table)
    return pa.concat_tables(tables)


def latest_topk(log_table: pa.Table, k: int, retriever: str = "dense") -> tuple[pa.Table, dict[str, str], dict]:
    """The newest logged top-``k`` per distinct query: (top-K table keyed ``log-<hash>``, query texts, counts)."""
    from synthir.dense.mine import TOPK_SCHEMA

    rows = [r for r in log_table.to_pylist() if r["retriever"] == retriever]
    if rows and all(r["query"] is None for r in rows):
        raise ValueError("the mining log holds no query texts (mining.store_queries was off), so no comparison "
                         "request can be written; turn store_queries on to mine production queries")
    newest: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: r["time"]):
        if r["query"] is not None and len(r["doc_ids"]) >= 2:
            newest[r["query_hash"]] = r
    qids = sorted(newest)
    table = pa.table({"query_id": [f"log-{h}" for h in qids], "doc_ids": [newest[h]["doc_ids"][:k] for h in qids],
                      "scores": [newest[h]["scores"][:k] for h in qids]}, schema=TOPK_SCHEMA)
    versions: dict[str, int] = {}
    for h in qids:
        versions[newest[h]["model_version"]] = versions.get(newest[h]["model_version"], 0) + 1
    counts = {"log_rows": log_table.num_rows, "retriever_rows": len(rows), "queries": len(qids),
              "by_model_version": versions}
    return table, {f"log-{h}": newest[h]["query"] for h in qids}, counts


def to_comparisons(log_uri: str, bundle_uri: str, preferences, out_uri: str, k: int = 5) -> dict:
    """Stage-2 P_compare requests (and, once answered, triples at ``out_uri``) from a log's newest top-``k``.

    ``preferences`` is a :class:`synthir.synth.preferences.PreferenceConfig`; its engine answers the requests
    (store first). With ``engine: batch`` the missing ones are exported as an OpenAI Batch file and
    :class:`synthir.synth.answer.MissingAnswers` says where.
    """
    from synthir.data.schemas import passage_text
    from synthir.serving.bundle import resolve
    from synthir.synth.preferences import synthesize_preferences

    topk, queries, counts = latest_topk(read_log(log_uri), k)
    if not queries:
        raise ValueError(f"{log_uri}: no logged query with 2 or more results to compare")
    docs = storage.read_table(storage.join(resolve(bundle_uri), "docs.parquet"))
    passages = {i: passage_text(t, x) for i, t, x in zip(docs["id"].to_pylist(), docs["title"].to_pylist(),
                                                        docs["text"].to_pylist())}
    unknown = {d for ids in topk["doc_ids"].to_pylist() for d in ids if d not in passages}
    if unknown:
        raise ValueError(f"{len(unknown)} logged document ids are not in the bundle {bundle_uri} (e.g. "
                         f"{sorted(unknown)[:3]}): pass the bundle the log was served from")
    summary = synthesize_preferences(topk, queries, passages, preferences, out_uri)
    return {**counts, **summary}
