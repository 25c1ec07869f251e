"""Load BEIR-layout datasets (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) into Arrow tables.

Every malformed input stops the load with a ``DataError`` naming the file, the line and the field. Files may be
gzip-compressed (``corpus.jsonl.gz``). Roots are local paths or URIs (``s3://bucket/scifact``); a bundled
dataset is named by its short name (``scifact``, ``pir/allsides``).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Iterator

import pyarrow as pa

from synthir import storage
from synthir.data import schemas


class DataError(ValueError):
    """Malformed dataset input; the message names file, line and field."""

    def __init__(self, file: str, message: str, line: int | None = None, field: str | None = None):
        self.file, self.line, self.field = file, line, field
        where = f"{file}:{line}" if line is not None else file
        what = f" field {field!r}:" if field else ""
        super().__init__(f"{where}:{what} {message}")


BUNDLED = ("scifact", "pir/allsides", "pir/agnews", "pir/story", "pir/ambigqa", "pir/exfever", "pir/perspectrum")


def bundled_root(name: str) -> str:
    """The local folder of a dataset shipped inside the package."""
    return str(resources.files("synthir") / "_data" / name)


def resolve_root(dataset: str) -> str:
    """Map a bundled dataset name to its folder; leave paths and URIs alone."""
    return bundled_root(dataset) if dataset in BUNDLED else dataset


def _find(root: str, name: str) -> str:
    for candidate in (name, name + ".gz"):
        uri = storage.join(root, candidate)
        if storage.exists(uri):
            return uri
    raise DataError(storage.join(root, name), "file not found (also looked for .gz)")


def read_lines(uri: str) -> list[str]:
    """The lines of a UTF-8 text file (gzip-decompressed when it ends in .gz)."""
    data = storage.read_bytes(uri)
    if uri.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise DataError(uri, f"not a valid gzip file: {e}") from None
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(uri, f"not UTF-8 at byte {e.start}") from None


def iter_json_objects(uri: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line of a JSONL file; DataError on a bad line."""
    for lineno, line in enumerate(read_lines(uri), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(uri, f"invalid JSON ({e.msg} at column {e.colno})", lineno) from None
        if not isinstance(row, dict):
            raise DataError(uri, f"expected a JSON object, got {type(row).__name__}", lineno)
        yield lineno, row


def _read_jsonl(uri: str, required: tuple[str, ...]) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    seen: dict[str, int] = {}
    for lineno, row in iter_json_objects(uri):
        for key in required:
            value = row.get(key)
            if value is None or (key == "_id" and str(value).strip() == ""):
                raise DataError(uri, "missing or empty", lineno, key)
            if key != "_id" and not isinstance(value, str):
                raise DataError(uri, f"expected a string, got {type(value).__name__}", lineno, key)
        rid = str(row["_id"])
        if rid in seen:
            raise DataError(uri, f"duplicate id {rid!r} (first on line {seen[rid]})", lineno, "_id")
        seen[rid] = lineno
        rows.append((lineno, row))
    if not rows:
        raise DataError(uri, "no rows")
    return rows


def read_corpus(root: str) -> pa.Table:
    """Read ``corpus.jsonl`` as a table with the CORPUS schema."""
    uri = _find(root, "corpus.jsonl")
    rows = _read_jsonl(uri, ("_id", "text"))
    for lineno, r in rows:
        if r.get("title") is not None and not isinstance(r["title"], str):
            raise DataError(uri, f"expected a string, got {type(r['title']).__name__}", lineno, "title")
    return pa.table(
        {"id": [str(r["_id"]) for _, r in rows], "title": [r.get("title") or "" for _, r in rows], "text": [r["text"] for _, r in rows]},
        schema=schemas.CORPUS,
    )


def read_queries(root: str) -> pa.Table:
    """Read ``queries.jsonl`` as a table with the QUERIES schema (metadata kept as a JSON string)."""
    uri = _find(root, "queries.jsonl")
    rows = _read_jsonl(uri, ("_id", "text"))
    return pa.table(
        {
            "id": [str(r["_id"]) for _, r in rows],
            "text": [r["text"] for _, r in rows],
            "metadata": [json.dumps(r.get("metadata") or {}, sort_keys=True) for _, r in rows],
        },
        schema=schemas.QUERIES,
    )


def available_splits(root: str) -> list[str]:
    """The qrels splits present under ``root/qrels``."""
    names = [storage.filesystem(f)[1].rsplit("/", 1)[-1] for f in storage.list_files(storage.join(root, "qrels"))]
    return sorted({n.split(".")[0] for n in names if n.endswith((".tsv", ".tsv.gz"))})


def read_qrels(root: str, split: str, query_ids: set[str], doc_ids: set[str]) -> pa.Table:
    """Read ``qrels/<split>.tsv``; every id must resolve to a query and a document."""
    try:
        uri = _find(root, f"qrels/{split}.tsv")
    except DataError:
        raise DataError(
            storage.join(root, "qrels", f"{split}.tsv"), f"split {split!r} not found; available: {available_splits(root) or 'none'}"
        ) from None
    qids, dids, scores = [], [], []
    for lineno, line in enumerate(read_lines(uri), start=1):
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        if lineno == 1 and parts[0] in ("query-id", "query_id", "qid"):
            continue
        if len(parts) == 4:  # TREC format: qid 0 docid score
            parts = [parts[0], parts[2], parts[3]]
        if len(parts) != 3:
            raise DataError(uri, f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(parts)}", lineno)
        qid, did, score = parts
        if qid not in query_ids:
            raise DataError(uri, f"unknown query id {qid!r}", lineno, "query-id")
        if did not in doc_ids:
            raise DataError(uri, f"unknown corpus id {did!r}", lineno, "corpus-id")
        try:
            scores.append(int(float(score)))
        except ValueError:
            raise DataError(uri, f"score {score!r} is not a number", lineno, "score") from None
        qids.append(qid)
        dids.append(did)
    if not qids:
        raise DataError(uri, "no qrels rows")
    return pa.table({"query_id": qids, "doc_id": dids, "score": scores}, schema=schemas.QRELS)


@dataclass
class RetrievalDataset:
    """A corpus, its queries, and qrels per split."""

    name: str
    root: str
    corpus: pa.Table
    queries: pa.Table
    qrels: dict[str, pa.Table] = field(default_factory=dict)

    def qrels_dict(self, split: str) -> dict[str, dict[str, int]]:
        """Qrels of a split as ``{query_id: {doc_id: score}}`` (pytrec_eval's form)."""
        if split not in self.qrels:
            raise DataError(storage.join(self.root, "qrels", f"{split}.tsv"), f"split {split!r} not loaded; loaded: {sorted(self.qrels)}")
        out: dict[str, dict[str, int]] = {}
        t = self.qrels[split]
        for q, d, s in zip(t["query_id"].to_pylist(), t["doc_id"].to_pylist(), t["score"].to_pylist()):
            out.setdefault(q, {})[d] = s
        return out

    def split_queries(self, split: str) -> pa.Table:
        """The queries that have qrels in ``split``, in file order."""
        wanted = set(self.qrels_dict(split))
        mask = [q in wanted for q in self.queries["id"].to_pylist()]
        return self.queries.filter(pa.array(mask))

    def passages(self) -> dict[str, str]:
        """``{doc_id: "title text"}`` in the one passage form every stage uses."""
        return {
            i: schemas.passage_text(t, x)
            for i, t, x in zip(self.corpus["id"].to_pylist(), self.corpus["title"].to_pylist(), self.corpus["text"].to_pylist())
        }


def load_beir(dataset: str, splits: list[str] | tuple[str, ...] = ("test",)) -> RetrievalDataset:
    """Load a BEIR-layout dataset (bundled name, path or URI) with the qrels of ``splits``."""
    root = resolve_root(dataset)
    corpus = read_corpus(root)
    queries = read_queries(root)
    qids, dids = set(queries["id"].to_pylist()), set(corpus["id"].to_pylist())
    qrels = {s: read_qrels(root, s, qids, dids) for s in splits}
    return RetrievalDataset(name=dataset.rstrip("/").rsplit("/", 1)[-1], root=root, corpus=corpus, queries=queries, qrels=qrels)


def to_ray(table: pa.Table, num_blocks: int | None = None):
    """Turn an Arrow table into a Ray Dataset (optionally repartitioned)."""
    import ray.data

    ds = ray.data.from_arrow(table)
    return ds.repartition(num_blocks) if num_blocks else ds
