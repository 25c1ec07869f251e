"""The evaluation job: retrieve for a dataset split with BM25 or a dense encoder, score, and record the run."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Literal

import pyarrow as pa
from pydantic import Field

from synthir import storage
from synthir.config import StrictModel, added_later, config_hash, execution_only
from synthir.data.beir import RetrievalDataset, load_beir
from synthir.dense.encode import EncodeConfig, encode_corpus, load_embeddings
from synthir.dense.encoder import EncoderConfig, encode_queries, load_encoder
from synthir.dense.index import DenseIndex, IndexConfig
from synthir.eval.metrics import DENSE_METRICS, evaluate
from synthir.generative.corpus import collapsed_dataset
from synthir.generative.retrieve import DecodeConfig
from synthir.manifest import Manifest
from synthir.runtime import RayConfig, init_ray
from synthir.sparse.bm25 import BM25Config, BM25Retriever

log = logging.getLogger(__name__)


class GenretEvalConfig(StrictModel):
    """The generative retriever to evaluate: a genret model folder (or the run step folder holding ``model/``)."""

    model: str | None = None
    decode: DecodeConfig = DecodeConfig()


class EvalConfig(StrictModel):
    """One evaluation: a dataset split, a retriever, the metrics, and where results go."""

    dataset: str = Field("scifact", description="bundled name (scifact, pir/allsides, ...), path or URI of a BEIR folder")
    split: str = "test"
    retriever: Literal["bm25", "dense", "genret"] = "dense"
    encoder: EncoderConfig = EncoderConfig()
    encode: EncodeConfig = EncodeConfig()
    index: IndexConfig = IndexConfig()
    bm25: BM25Config = BM25Config()
    genret: GenretEvalConfig = added_later(GenretEvalConfig())
    collapse_identical: bool = added_later(False, description="byte-identical documents count as one (their qrels "
                                           "merged): PIR AGNews has 230 distinct texts among 500 documents")
    top_k: int = Field(100, ge=1)
    metrics: list[str] = Field(default_factory=lambda: list(DENSE_METRICS))
    storage: str = execution_only("./runs", description="root for run outputs: a path, file:// or s3:// URI")
    name: str | None = Field(None, description="run name; default <dataset>-<retriever>-<config hash>")
    ray: RayConfig = execution_only(RayConfig())


def corpus_fingerprint(corpus: pa.Table) -> str:
    """A digest of a corpus's ids and texts (keys the embedding cache)."""
    h = hashlib.sha256()
    for col in ("id", "title", "text"):
        h.update("\x00".join(corpus[col].to_pylist()).encode("utf-8"))
        h.update(b"\x01")
    return h.hexdigest()[:16]


def embeddings_uri(root: str, dataset: RetrievalDataset, encoder: EncoderConfig) -> str:
    """Where a corpus's embeddings by ``encoder`` live, shared by every run that needs them."""
    key = hashlib.sha256(f"{corpus_fingerprint(dataset.corpus)}|{config_hash(encoder)}".encode()).hexdigest()[:16]
    return storage.join(root, "embeddings", f"{dataset.name}-{key}")


def dense_run(dataset: RetrievalDataset, split: str, encoder: EncoderConfig, encode: EncodeConfig, index: IndexConfig,
              root: str, top_k: int, timings: dict | None = None) -> tuple[dict, dict]:
    """Encode the corpus (cached), index it, and search the split's queries; returns (run, encode stats)."""
    timings = timings if timings is not None else {}
    uri = embeddings_uri(root, dataset, encoder)
    t = time.perf_counter()
    stats = encode_corpus(dataset.corpus, encoder, uri, encode)
    timings["encode_corpus"] = round(time.perf_counter() - t, 2)
    ids, emb = load_embeddings(uri)
    t = time.perf_counter()
    idx = DenseIndex.build(ids, emb, index)
    queries = dataset.split_queries(split)
    model = load_encoder(encoder)
    q_emb = encode_queries(model, encoder, queries["text"].to_pylist())
    run = idx.search_run(queries["id"].to_pylist(), q_emb, top_k)
    timings["index_and_search"] = round(time.perf_counter() - t, 2)
    return run, {**stats, "embeddings_uri": uri}


def bm25_run(dataset: RetrievalDataset, split: str, config: BM25Config, top_k: int) -> dict[str, dict[str, float]]:
    """Index the corpus with BM25 and search the split's queries; returns the run."""
    passages = dataset.passages()
    bm25 = BM25Retriever(list(passages), list(passages.values()), config)
    queries = dataset.split_queries(split)
    return bm25.search_run(queries["id"].to_pylist(), queries["text"].to_pylist(), top_k)


def genret_run(dataset: RetrievalDataset, split: str, config: GenretEvalConfig) -> tuple[dict[str, dict[str, float]], dict]:
    """The trie-constrained beam-search run of a genret model on ``split`` (its documents must be the model's)."""
    from synthir.generative.retrieve import GenerativeRetriever, model_folder

    if not config.model:
        raise ValueError("retriever genret needs a model: --model <genret run>/model (or genret.model=...)")
    model = model_folder(config.model)
    retriever = GenerativeRetriever(model)
    unknown = set(retriever.trie.identifiers) - set(dataset.corpus["id"].to_pylist())
    if unknown:
        raise ValueError(f"{model}: {len(unknown)} of its documents are not in {dataset.name} (e.g. {sorted(unknown)[:3]}); "
                         "evaluate on the corpus it was trained on (with collapse_identical as in training)")
    queries = dataset.split_queries(split)
    run, stats = retriever.run(queries["id"].to_pylist(), queries["text"].to_pylist(), config.decode)
    return run, {**stats, "model": model}


def run_to_table(run: dict[str, dict[str, float]]) -> pa.Table:
    """A run as a table (query_id, doc_id, score, rank)."""
    q, d, s, r = [], [], [], []
    for qid, docs in run.items():
        for rank, (did, score) in enumerate(sorted(docs.items(), key=lambda x: (-x[1], x[0])), start=1):
            q.append(qid), d.append(did), s.append(score), r.append(rank)
    return pa.table({"query_id": q, "doc_id": d, "score": pa.array(s, pa.float32()), "rank": pa.array(r, pa.int32())})


def run_eval(config: EvalConfig) -> dict:
    """Run one evaluation end to end; returns the results dict also written to the run directory."""
    name = config.name or f"{config.dataset.rstrip('/').rsplit('/', 1)[-1]}-{config.retriever}-{config_hash(config)}"
    run_dir = storage.join(config.storage, "eval", name)
    manifest = Manifest("eval", config, run_dir)
    start = time.perf_counter()
    with manifest.timer("load_data"):
        dataset = load_beir(config.dataset, splits=(config.split,))
        if config.collapse_identical:
            dataset, _ = collapsed_dataset(dataset)
    manifest.input("dataset", dataset.root)
    manifest.count("corpus", dataset.corpus.num_rows)
    manifest.count("queries", len(dataset.qrels_dict(config.split)))
    extra: dict = {}
    if config.retriever == "bm25":
        with manifest.timer("bm25_index_and_search"):
            run = bm25_run(dataset, config.split, config.bm25, config.top_k)
    elif config.retriever == "genret":
        with manifest.timer("genret_decode"):
            run, extra = genret_run(dataset, config.split, config.genret)
        manifest.input("model", extra["model"])
    else:
        init_ray(config.ray)
        run, extra = dense_run(dataset, config.split, config.encoder, config.encode, config.index, config.storage,
                               config.top_k, manifest.data["timings_s"])
        manifest.input("embeddings", extra["embeddings_uri"])
    metrics = evaluate(dataset.qrels_dict(config.split), run, config.metrics)
    manifest.metrics(metrics)
    storage.write_table(storage.join(run_dir, "run.parquet"), run_to_table(run))
    results = {
        "dataset": config.dataset,
        "split": config.split,
        "retriever": config.retriever,
        "model": {"dense": config.encoder.model, "genret": extra.get("model")}.get(config.retriever, "bm25"),
        "metrics": metrics,
        "wall_s": round(time.perf_counter() - start, 2),
        **({"docs_per_s": extra["docs_per_s"], "encode_s": extra["seconds"]} if config.retriever == "dense" else {}),
        **({"queries_per_s": extra["queries_per_s"]} if config.retriever == "genret" else {}),
        "run_dir": run_dir,
    }
    storage.write_json(storage.join(run_dir, "results.json"), results)
    manifest.output("results", storage.join(run_dir, "results.json"))
    manifest.output("run", storage.join(run_dir, "run.parquet"))
    manifest.write()
    return results
