"""Corpus encoding as a Ray Data batch-inference job: an actor pool of encoders writing Parquet shards.

The output directory holds ``part-*.parquet`` shards (``id``, ``embedding`` as a fixed-size float32 list) and,
written last, ``_SUCCESS.json`` with the row count and dimension. A directory without that marker is an
unfinished run: it is cleared and encoded again, so a reader never takes half a corpus.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa

from synthir import storage
from synthir.config import StrictModel, execution_only
from synthir.data.schemas import EMBEDDINGS_ID, EMBEDDINGS_VECTOR, passage_text
from synthir.dense.encoder import EncoderConfig, encode_passages, load_encoder

MARKER = "_SUCCESS.json"


class EncodeConfig(StrictModel):
    """Ray Data settings of the corpus-encoding job."""

    num_actors: int = execution_only(1, ge=1, description="encoder replicas (one per GPU on a cluster)")
    num_gpus_per_actor: float = execution_only(0.0, ge=0)
    num_cpus_per_actor: float = execution_only(1.0, gt=0)
    torch_threads: int | None = execution_only(None, ge=1, description="CPU threads per actor; default: all local cores")
    batch_size: int = execution_only(256, ge=1, description="rows handed to each actor call")


class _EncodeBatch:
    """Ray Data callable class: one loaded encoder per actor."""

    def __init__(self, encoder: dict, torch_threads: int | None):
        import torch

        torch.set_num_threads(torch_threads or os.cpu_count() or 1)
        self.config = EncoderConfig.model_validate(encoder)
        self.model = load_encoder(self.config)

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = [passage_text(t, x) for t, x in zip(batch["title"].to_pylist(), batch["text"].to_pylist())]
        emb = encode_passages(self.model, self.config, texts)
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), pa.float32()), emb.shape[1])
        return pa.table({EMBEDDINGS_ID: batch["id"], EMBEDDINGS_VECTOR: vectors})


def is_complete(out_uri: str) -> bool:
    """True when ``out_uri`` holds a finished encoding."""
    return storage.exists(storage.join(out_uri, MARKER))


def encode_corpus(corpus: pa.Table, encoder: EncoderConfig, out_uri: str, config: EncodeConfig | None = None) -> dict:
    """Encode every corpus row on Ray Data into Parquet shards under ``out_uri``; returns the marker's stats."""
    import ray.data

    config = config or EncodeConfig()
    if is_complete(out_uri):
        return storage.read_json(storage.join(out_uri, MARKER))
    storage.delete(out_uri)
    start = time.perf_counter()
    num_blocks = max(config.num_actors * 4, corpus.num_rows // 2000 or 1)
    ds = ray.data.from_arrow(corpus).repartition(num_blocks)
    ds = ds.map_batches(
        _EncodeBatch,
        fn_constructor_kwargs={"encoder": encoder.model_dump(), "torch_threads": config.torch_threads},
        batch_size=config.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=config.num_actors),
        num_cpus=config.num_cpus_per_actor,
        num_gpus=config.num_gpus_per_actor,
    )
    fs, path = storage.filesystem(out_uri)
    ds.write_parquet(path, filesystem=fs)
    seconds = time.perf_counter() - start
    table = storage.read_table(out_uri)
    stats = {
        "rows": table.num_rows,
        "dim": table.schema.field(EMBEDDINGS_VECTOR).type.list_size,
        "seconds": round(seconds, 2),
        "docs_per_s": round(table.num_rows / seconds, 1),
        "encoder": encoder.model_dump(),
    }
    if table.num_rows != corpus.num_rows:
        raise RuntimeError(f"{out_uri}: encoded {table.num_rows} rows for a corpus of {corpus.num_rows}")
    storage.write_json(storage.join(out_uri, MARKER), stats)
    return stats


def load_embeddings(out_uri: str) -> tuple[list[str], np.ndarray]:
    """Read a finished encoding as (ids, float32 matrix)."""
    if not is_complete(out_uri):
        raise storage.StorageError(f"{out_uri}: no finished encoding here ({MARKER} missing)")
    fs, path = storage.filesystem(out_uri)
    import pyarrow.dataset as pads

    table = pads.dataset(path, filesystem=fs, format="parquet").to_table()
    vectors = table[EMBEDDINGS_VECTOR].combine_chunks()
    dim = vectors.type.list_size
    matrix = vectors.values.to_numpy(zero_copy_only=False).reshape(-1, dim).astype("float32", copy=False)
    return table[EMBEDDINGS_ID].to_pylist(), matrix
