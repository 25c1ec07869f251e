"""faiss indexes over passage embeddings: exact inner product by default, IVF or HNSW as options."""

from __future__ import annotations

from typing import Literal

import faiss
import numpy as np
from pydantic import Field

from synthir import storage
from synthir.config import StrictModel, execution_only


class IndexConfig(StrictModel):
    """Which faiss index to build. Inner product equals cosine on normalised embeddings."""

    kind: Literal["flat", "ivf", "hnsw"] = "flat"
    nlist: int = Field(1024, ge=1, description="IVF: number of clusters (capped at rows/39)")
    nprobe: int = Field(32, ge=1, description="IVF: clusters visited per query")
    hnsw_m: int = Field(32, ge=4, description="HNSW: graph degree")
    ef_search: int = Field(128, ge=1, description="HNSW: search breadth")
    use_gpu: bool = execution_only(False, description="move the index to every visible GPU (faiss-gpu)")


class DenseIndex:
    """A faiss index plus the document ids of its rows."""

    def __init__(self, index: faiss.Index, ids: list[str], config: IndexConfig):
        self.index, self.ids, self.config = index, list(ids), config

    @classmethod
    def build(cls, ids: list[str], embeddings: np.ndarray, config: IndexConfig | None = None) -> "DenseIndex":
        """Build an index over ``embeddings`` (rows aligned with ``ids``)."""
        config = config or IndexConfig()
        x = np.ascontiguousarray(embeddings, dtype="float32")
        n, d = x.shape
        if len(ids) != n:
            raise ValueError(f"{len(ids)} ids for {n} embeddings")
        if config.kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif config.kind == "ivf":
            nlist = max(1, min(config.nlist, n // 39))
            index = faiss.index_factory(d, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
            index.train(x)
            index.nprobe = min(config.nprobe, nlist)
        else:
            index = faiss.IndexHNSWFlat(d, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = config.ef_search
        if config.use_gpu:
            if not hasattr(faiss, "index_cpu_to_all_gpus") or faiss.get_num_gpus() == 0:
                raise RuntimeError("index.use_gpu is set but faiss sees no GPU (install faiss-gpu on a GPU node)")
            index = faiss.index_cpu_to_all_gpus(index)
        index.add(x)
        return cls(index, ids, config)

    def search(self, queries: np.ndarray, k: int) -> tuple[list[list[str]], np.ndarray]:
        """Top-``k`` document ids and scores for each query row."""
        k = min(k, len(self.ids))
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype="float32"), k)
        return [[self.ids[r] for r in row if r >= 0] for row in rows], scores

    def search_run(self, query_ids: list[str], queries: np.ndarray, k: int) -> dict[str, dict[str, float]]:
        """Top-``k`` results as a run ``{query_id: {doc_id: score}}``."""
        ids, scores = self.search(queries, k)
        return {q: {d: float(s) for d, s in zip(row, srow)} for q, row, srow in zip(query_ids, ids, scores)}

    def save(self, uri: str) -> None:
        """Store the index and its ids under the directory ``uri``."""
        cpu = faiss.index_gpu_to_cpu(self.index) if self.config.use_gpu else self.index
        storage.write_bytes(storage.join(uri, "index.faiss"), faiss.serialize_index(cpu).tobytes())
        storage.write_json(storage.join(uri, "index.json"), {"ids": self.ids, "config": self.config.model_dump()})

    @classmethod
    def load(cls, uri: str) -> "DenseIndex":
        """Load an index stored by ``save``."""
        meta = storage.read_json(storage.join(uri, "index.json"))
        raw = np.frombuffer(storage.read_bytes(storage.join(uri, "index.faiss")), dtype="uint8")
        config = IndexConfig.model_validate(meta["config"])
        index = faiss.deserialize_index(raw)
        if config.use_gpu:
            index = faiss.index_cpu_to_all_gpus(index)
        return cls(index, meta["ids"], config)
