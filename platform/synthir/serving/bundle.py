"""Retriever bundles: everything a serving replica needs, in one folder or URI, written once and read only.

A dense bundle holds::

    retriever.json     kind, version, encoder config (model path/URI, prefixes, pooling), index config, counts
    index/             the faiss index and the row -> document id map (``DenseIndex.save``)
    docs.parquet       id, title, text of every indexed document (returned with ``return_text``)

``synthir index build`` writes it: next to a trained model (``<stage dir>/serving/``) or anywhere for a plain
encoder such as the bundled MiniLM. The corpus embeddings come from the shared encoding cache
(``<storage>/embeddings/``), so a model that was already evaluated on the corpus is not encoded again. The
version is a digest of the model files' names and sizes, the encoder settings, the index settings and the indexed
rows (ids and embeddings): two bundles with the same version serve the same results. Serving only reads a bundle (``docs/architecture.md``).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow as pa
from pydantic import Field

from synthir import storage
from synthir.config import StrictModel, config_hash, execution_only
from synthir.data.beir import load_beir
from synthir.dense.encode import EncodeConfig, encode_corpus, load_embeddings
from synthir.dense.encoder import BUNDLED_MINILM, EncoderConfig
from synthir.dense.index import DenseIndex, IndexConfig
from synthir.eval.run import embeddings_uri

BUNDLE_FILE = "retriever.json"
DOCS_SCHEMA = pa.schema([("id", pa.string()), ("title", pa.string()), ("text", pa.string())])


class BundleError(ValueError):
    """A bundle is missing, unfinished, or not of the kind asked for; the message names the URI."""


class BuildConfig(StrictModel):
    """What ``synthir index build`` indexes and with which encoder."""

    dataset: str = Field("scifact", description="bundled name or BEIR folder path/URI whose corpus is indexed")
    encoder: EncoderConfig = EncoderConfig()
    index: IndexConfig = IndexConfig()
    encode: EncodeConfig = EncodeConfig()
    storage: str = execution_only("./runs", description="root of the shared embeddings cache")


def _model_digest(model: str) -> str:
    """A digest of a model folder's file names and sizes (cheap even for 7B checkpoints); the name when bundled."""
    if model == BUNDLED_MINILM or not storage.exists(model):
        return model
    h = hashlib.sha256()
    fs, root = storage.filesystem(model)
    for uri in storage.list_files(model):
        path = storage.filesystem(uri)[1]
        h.update(f"{path[len(root):]}\x00{fs.get_file_info(path).size}\x01".encode())
    return h.hexdigest()[:16]


def encoder_of_run(run: str, requested: EncoderConfig) -> EncoderConfig:
    """The encoder config of a trained stage folder: its recorded prefixes and lengths, under ``requested``'s
    explicitly set fields, with the folder's ``model/`` (a folder from before the record keeps ``requested``)."""
    marker = storage.join(run, "_SUCCESS.json")
    if not storage.exists(storage.join(run, "model")) or not storage.exists(marker):
        raise BundleError(f"{run}: no finished trained model here (model/ or _SUCCESS.json missing)")
    recorded = storage.read_json(marker).get("encoder") or {}
    explicit = requested.model_dump(include=requested.model_fields_set)
    return EncoderConfig.model_validate({**recorded, **explicit, "model": storage.join(run, "model"), "pooling": "model"})


def resolve(uri: str) -> str:
    """The bundle folder for ``uri``: the bundle itself, or a run/stage folder holding one in ``serving/``."""
    for candidate in (uri, storage.join(uri, "serving")):
        if storage.exists(storage.join(candidate, BUNDLE_FILE)):
            return candidate
    raise BundleError(f"{uri}: no retriever bundle here ({BUNDLE_FILE} missing, also under serving/); "
                      f"build one with: synthir index build --run {uri} --dataset <name>")


def build_dense(config: BuildConfig, out_uri: str) -> dict:
    """Encode (cached) and index a corpus with one encoder, and write the bundle to ``out_uri``; returns its meta."""
    start = time.perf_counter()
    dataset = load_beir(config.dataset, splits=())
    cache = embeddings_uri(config.storage, dataset, config.encoder)
    encode_corpus(dataset.corpus, config.encoder, cache, config.encode)
    ids, emb = load_embeddings(cache)
    index = DenseIndex.build(ids, emb, config.index)
    index.save(storage.join(out_uri, "index"))
    docs = dataset.corpus.select(["id", "title", "text"]).cast(DOCS_SCHEMA)
    storage.write_table(storage.join(out_uri, "docs.parquet"), docs)
    # The index is a function of its rows and its config, so they stand for it (no read-back of what was written).
    rows = hashlib.sha256("\x00".join(ids).encode() + emb.tobytes()).hexdigest()
    version = hashlib.sha256(f"{_model_digest(config.encoder.model)}|{config_hash(config.encoder)}|"
                             f"{config_hash(config.index)}|{rows}".encode()).hexdigest()[:12]
    meta = {
        "kind": "dense",
        "version": version,
        "encoder": config.encoder.model_dump(mode="json"),
        "index": config.index.model_dump(mode="json"),
        "dataset": config.dataset,
        "documents": len(ids),
        "dim": int(emb.shape[1]),
        "embeddings": cache,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "build_s": round(time.perf_counter() - start, 2),
    }
    storage.write_json(storage.join(out_uri, BUNDLE_FILE), meta)  # written last: a bundle without it is unfinished
    return {**meta, "uri": out_uri}


@dataclass
class DenseBundle:
    """A loaded dense bundle: its metadata, encoder config, index and documents."""

    uri: str
    meta: dict
    encoder: EncoderConfig
    index: DenseIndex
    docs: dict[str, tuple[str, str]]

    @property
    def version(self) -> str:
        """The bundle's content version."""
        return self.meta["version"]


def read_meta(uri: str, kind: str = "dense") -> tuple[str, dict]:
    """(bundle folder, metadata) of ``uri``, checked to be a bundle of ``kind``."""
    folder = resolve(uri)
    meta = storage.read_json(storage.join(folder, BUNDLE_FILE))
    if meta.get("kind") != kind:
        raise BundleError(f"{folder}: a {meta.get('kind')!r} bundle, not {kind!r}")
    return folder, meta


def encoder_of(uri: str) -> tuple[str, dict, EncoderConfig]:
    """(bundle folder, metadata, encoder config) without loading the index (what an encoder replica needs)."""
    folder, meta = read_meta(uri)
    return folder, meta, EncoderConfig.model_validate(meta["encoder"])


def load_dense(uri: str, nprobe: int | None = None, ef_search: int | None = None) -> DenseBundle:
    """Load a dense bundle (index and documents); ``nprobe`` / ``ef_search`` override the stored search breadth."""
    folder, meta, encoder = encoder_of(uri)
    index = DenseIndex.load(storage.join(folder, "index"))
    if nprobe is not None and hasattr(index.index, "nprobe"):
        index.index.nprobe = nprobe
    if ef_search is not None and hasattr(index.index, "hnsw"):
        index.index.hnsw.efSearch = ef_search
    table = storage.read_table(storage.join(folder, "docs.parquet"))
    docs = dict(zip(table["id"].to_pylist(), zip(table["title"].to_pylist(), table["text"].to_pylist())))
    return DenseBundle(uri=folder, meta=meta, encoder=encoder, index=index, docs=docs)
