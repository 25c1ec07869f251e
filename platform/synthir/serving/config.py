"""Typed configuration of the retrieval service: what it serves, its deployments, limits, auth and mining log."""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import Field, model_validator

from synthir.config import StrictModel
from synthir.generative.retrieve import DecodeConfig


class DeploymentOptions(StrictModel):
    """Ray Serve options of one deployment: replicas or autoscaling, resources, and how much it may queue."""

    num_replicas: int | None = Field(1, ge=1, description="fixed replica count (ignored when autoscaling is set)")
    autoscaling: dict[str, Any] | None = Field(
        None, description="Ray Serve autoscaling_config, e.g. {min_replicas: 1, max_replicas: 4, target_ongoing_requests: 16}")
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica (1 for an encoder on a GPU node)")
    max_ongoing_requests: int = Field(64, ge=1, description="requests a replica accepts at once; batching needs > 1")

    def serve_options(self, name: str) -> dict[str, Any]:
        """Keyword arguments for ``Deployment.options``."""
        opts: dict[str, Any] = {
            "name": name,
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
        }
        if self.autoscaling:
            opts["autoscaling_config"] = dict(self.autoscaling)
            opts["num_replicas"] = "auto"
        else:
            opts["num_replicas"] = self.num_replicas
        return opts


class BatchOptions(StrictModel):
    """``@serve.batch`` settings: requests combined per model call and how long the first one waits for company."""

    max_batch_size: int = Field(32, ge=1, description="1 turns batching off")
    batch_wait_timeout_s: float = Field(0.005, ge=0)


class EncoderDeployment(DeploymentOptions):
    """The query encoder: replicas, resources and batching."""

    batch: BatchOptions = BatchOptions()
    torch_threads: int | None = Field(None, ge=1, description="CPU threads per replica; default: the replica's CPUs")


class SearcherDeployment(DeploymentOptions):
    """The faiss search: replicas, resources, batching and search breadth of approximate indexes."""

    batch: BatchOptions = BatchOptions(max_batch_size=64, batch_wait_timeout_s=0.002)
    nprobe: int | None = Field(None, ge=1, description="IVF: override the bundle's nprobe")
    ef_search: int | None = Field(None, ge=1, description="HNSW: override the bundle's efSearch")


class GenretDeployment(DeploymentOptions):
    """The generative retriever: a genret model folder (or its run step folder), beam search, batching."""

    model: str = Field(..., description="a genret model folder with genret_trie.json, or the sft-/rpo- step folder")
    decode: DecodeConfig = DecodeConfig()
    batch: BatchOptions = BatchOptions(max_batch_size=8, batch_wait_timeout_s=0.01)
    torch_threads: int | None = Field(None, ge=1, description="CPU threads per replica; default: the replica's CPUs")


class IngressDeployment(DeploymentOptions):
    """The FastAPI ingress: replicas, resources, and how it combines its concurrent requests into encoder calls."""

    batch: BatchOptions = Field(BatchOptions(max_batch_size=64, batch_wait_timeout_s=0.0),
                                description="concurrent requests of one replica sent on as one encoder call (and, for "
                                            "searches, one searcher call); 1: one call each")


class Limits(StrictModel):
    """Input bounds; a request over any of them gets a 4xx that names the limit."""

    max_body_bytes: int = Field(1 << 20, ge=256)
    max_queries: int = Field(64, ge=1, description="queries per /v1/search request")
    max_inputs: int = Field(256, ge=1, description="inputs per /v1/embeddings request")
    max_query_chars: int = Field(2048, ge=1, description="characters per query or embedding input")
    max_k: int = Field(100, ge=1)


class AuthConfig(StrictModel):
    """Bearer-token auth on every route but /healthz. The key is read from an environment variable, never a file."""

    api_key_env: str = Field("SYNTHIR_API_KEY", min_length=1, description="environment variable holding the key")
    api_key_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$",
                                       description="or the key's SHA-256 (hex), so no secret sits in a config file")
    allow_anonymous: bool = Field(False, description="serve without a key (local experiments only)")
    public_docs: bool = Field(False, description="serve /docs and /openapi.json without a key (a browser's Swagger "
                                                 "UI cannot send one)")

    @model_validator(mode="after")
    def _no_empty_key(self) -> "AuthConfig":
        if self.api_key_sha256 == hashlib.sha256(b"").hexdigest():
            raise ValueError("auth.api_key_sha256 is the digest of an empty key")
        return self


class MiningConfig(StrictModel):
    """Online top-K mining: every search's (query, top-K, scores, model version, time) logged as Parquet parts."""

    enabled: bool = False
    uri: str | None = Field(None, description="where the log parts go (path or s3://); required when enabled")
    top_k: int = Field(10, ge=1, description="ids and scores kept per query")
    store_queries: bool = Field(False, description="keep query texts (privacy: off by default; needed for to-requests)")
    flush_rows: int = Field(256, ge=1, description="rows buffered before a part is written")
    flush_interval_s: float = Field(5.0, gt=0, description="a part is written at least this often while rows wait")

    @model_validator(mode="after")
    def _uri_when_enabled(self) -> "MiningConfig":
        if self.enabled and not self.uri:
            raise ValueError("mining.enabled needs mining.uri (a path or s3:// URI for the log)")
        return self


class ServeConfig(StrictModel):
    """The retrieval service: which bundle it serves and how its deployments run."""

    run: str | None = Field(None, description="a retriever bundle, or a run/stage folder with one in serving/ (path or "
                                              "URI); in a Serve config file it is the deployments' user_config.run")
    name: str = Field("synthir", description="Serve application name")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    route_prefix: str = "/"
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$", description="Serve's log level")
    access_log: bool = Field(True, description="one log line per request in the proxy and each replica")
    encoder: EncoderDeployment = EncoderDeployment()
    searcher: SearcherDeployment = SearcherDeployment(num_cpus=0.5)
    ingress: IngressDeployment = IngressDeployment(num_cpus=0.5, max_ongoing_requests=256)
    genret: GenretDeployment | None = Field(None, description="also serve a generative retriever (retriever: genret)")
    limits: Limits = Limits()
    auth: AuthConfig = AuthConfig()
    mining: MiningConfig = MiningConfig()

    @model_validator(mode="after")
    def _log_outside_bundle(self) -> "ServeConfig":
        if self.mining.enabled and self.run and self.mining.uri.rstrip("/").startswith(self.run.rstrip("/") + "/"):
            raise ValueError(f"mining.uri {self.mining.uri!r} is inside the served bundle {self.run!r}; the service "
                             f"never writes there: log somewhere else")
        return self
