"""The retrieval API on Ray Serve: a FastAPI ingress in front of the retriever deployments.

Routes (OpenAPI at ``/docs``): ``POST /v1/search`` (ranked ids, scores, texts), ``POST /v1/embeddings`` (OpenAI's
embeddings API, so the ``openai`` client, LangChain and LlamaIndex work unchanged), ``GET /v1/models``,
``GET /v1/info`` and ``GET /healthz``. Every route but ``/healthz`` needs ``Authorization: Bearer <key>``; the
ingress holds only the key's SHA-256 and compares digests in constant time. Bodies are read by hand up to
``limits.max_body_bytes`` and validated here, so bad input is a 4xx whose message names the field or limit.

Retrievers plug in by name: ``self.retrievers`` maps ``dense`` to a route over the encoder and searcher
deployments; a generative retriever adds one more entry (a deployment answering ``search(queries, k)``).

Usage::

    SYNTHIR_API_KEY=... serve run serve/dense.yaml        # or: synthir serve --run <bundle or stage dir>
    curl -H "Authorization: Bearer $SYNTHIR_API_KEY" localhost:8000/v1/search -d '{"query": "...", "k": 5}'
"""


import asyncio
import base64
import hashlib
import hmac
import json
import os
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve

from synthir.config import config_hash
from synthir.serving.config import AuthConfig, ServeConfig
from synthir.serving.mining import MiningLog

RETRIEVER_MODEL_ID = "dense"
MAX_TEXTS_PER_CALL = 256  # texts per encoder call; larger combined batches are split


class ApiError(Exception):
    """A request the API refuses: status code, message, and the field or limit it concerns."""

    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.kind, self.headers = status, message, param, kind, headers


class SearchRequest(BaseModel):
    """``POST /v1/search``: one query or a list of them."""

    model_config = ConfigDict(extra="forbid")
    query: str | list[str] = Field(..., description="a query, or a list of queries")
    k: int = Field(10, ge=1, description="results per query")
    retriever: str = Field("dense", description="which served retriever answers")
    return_text: bool = Field(False, description="include each document's title and text")


class Hit(BaseModel):
    """One ranked document."""

    id: str
    score: float
    rank: int
    title: str | None = None
    text: str | None = None


class QueryResult(BaseModel):
    """The ranked documents of one query."""

    query: str
    hits: list[Hit]


class SearchResponse(BaseModel):
    """``POST /v1/search`` answer: one result per query, in request order."""

    retriever: str
    model_version: str
    results: list[QueryResult]


class EmbeddingsRequest(BaseModel):
    """``POST /v1/embeddings``, as OpenAI's API (token-id inputs are not supported)."""

    model_config = ConfigDict(extra="forbid")
    input: str | list[str]
    model: str = RETRIEVER_MODEL_ID
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="must equal the model's dimension when given")
    user: str | None = None
    input_type: Literal["query", "passage"] = Field(
        "query", description="synthir extension: which prefix the encoder applies (E5: 'query: ' / 'passage: ')")


def _error_body(status: int, message: str, param: str | None, kind: str) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


app = FastAPI(title="synthir retrieval API", version="1", docs_url=None, redoc_url=None, openapi_url=None,
              description="Dense (and, once trained, generative) retrievers trained by synthir. Send "
                          "`Authorization: Bearer <key>` on every route but /healthz.")


@app.exception_handler(ApiError)
async def _api_error(_: Request, err: ApiError) -> JSONResponse:
    return JSONResponse(_error_body(err.status, err.message, err.param, err.kind), status_code=err.status,
                        headers=err.headers)


def _validation_message(err: ValidationError) -> tuple[str, str]:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "body"
    if first["type"] == "extra_forbidden":
        return f"unknown field {field!r}", field
    return f"{field}: {first['msg']}", field


def _openapi_body(model: type[BaseModel]) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


@serve.deployment
@serve.ingress(app)
class RetrievalAPI:
    """FastAPI ingress: auth, limits, the routes, and the mining log of this replica."""

    def __init__(self, encoder, searcher, config: dict, key_sha256: str | None, genret=None):
        self.config = ServeConfig.model_validate(config)
        self.limits = self.config.limits
        self.key_sha256 = key_sha256
        self.encoder, self.searcher = encoder, searcher
        for batched in (self._encode_together, self._search_together):
            batched.set_max_batch_size(self.config.ingress.batch.max_batch_size)
            batched.set_batch_wait_timeout_s(self.config.ingress.batch.batch_wait_timeout_s)
        self.retrievers = {"dense": self._dense_search}
        self.genret = genret
        if genret is not None:
            self.retrievers["genret"] = self._genret_search
        self.config_hash = config_hash(self.config)
        self.mining: MiningLog | None = None
        if self.config.mining.enabled:
            try:
                replica = serve.get_replica_context().replica_id.unique_id
            except Exception:  # outside a replica (never in Serve): any unique name will do
                replica = None
            self.mining = MiningLog(self.config.mining, replica)

    def __del__(self):
        if self.mining is not None:
            self.mining.flush_sync()

    # --- input handling -------------------------------------------------------------------------------------

    def _authorize(self, request: Request) -> None:
        if self.key_sha256 is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        given = hashlib.sha256(token.strip().encode()).hexdigest() if scheme.lower() == "bearer" else ""
        if not hmac.compare_digest(given.encode(), self.key_sha256.encode()):
            raise ApiError(401, "missing or invalid API key: send 'Authorization: Bearer <key>'", None,
                           "authentication_error", {"WWW-Authenticate": "Bearer"})

    async def _body(self, request: Request, model: type[BaseModel]) -> Any:
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"request body is {declared} bytes; the limit is limits.max_body_bytes={limit}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body exceeds limits.max_body_bytes={limit}")
            chunks.append(chunk)
        try:
            data = json.loads(b"".join(chunks) or b"null")
        except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, 4,300+ digit ints, deep nesting
            raise ApiError(422, f"body is not valid JSON: {str(e)[:200]}") from None
        if not isinstance(data, dict):
            raise ApiError(422, f"body must be a JSON object, got {type(data).__name__}")
        try:
            return model.model_validate(data)
        except ValidationError as e:
            message, field = _validation_message(e)
            raise ApiError(422, message, field) from None

    def _texts(self, value: str | list[str], field: str, max_count: int, limit_name: str) -> list[str]:
        texts = [value] if isinstance(value, str) else list(value)
        if not texts:
            raise ApiError(422, f"{field} is empty", field)
        if len(texts) > max_count:
            raise ApiError(413, f"{len(texts)} {field} values; the limit is limits.{limit_name}={max_count}", field)
        for i, t in enumerate(texts):
            if not t.strip():
                raise ApiError(422, f"{field}[{i}] is blank", field)
            try:
                t.encode("utf-8")
            except UnicodeEncodeError:
                raise ApiError(422, f"{field}[{i}] is not valid Unicode (a lone surrogate)", field) from None
            if len(t) > self.limits.max_query_chars:
                raise ApiError(413, f"{field}[{i}] has {len(t)} characters; the limit is "
                                    f"limits.max_query_chars={self.limits.max_query_chars}", field)
        return texts

    # --- retrievers -----------------------------------------------------------------------------------------

    async def _encode(self, texts: list[str], kind: str, count_tokens: bool = False) -> dict:
        return await self._encode_together((texts, kind, count_tokens))

    async def _encode_bounded(self, texts: list[str], kind: str, count: bool, retry: bool = True) -> dict:
        """Encoder calls of at most MAX_TEXTS_PER_CALL texts each (so no replica blocks long on one call), joined."""
        parts = await asyncio.gather(*(self.encoder.encode.remote((texts[i:i + MAX_TEXTS_PER_CALL], kind, count))
                                       for i in range(0, len(texts), MAX_TEXTS_PER_CALL)))
        if len({p["bundle"] for p in parts}) > 1:  # a model swap landed between the parts: never mix versions
            if not retry:
                raise RuntimeError("the served model changed twice during one request")
            return await self._encode_bounded(texts, kind, count, retry=False)
        if len(parts) == 1:
            return parts[0]
        return {**parts[0], "vectors": np.concatenate([p["vectors"] for p in parts]),
                "tokens": np.concatenate([p["tokens"] for p in parts])}

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0, max_concurrent_batches=2)
    async def _encode_together(self, items: list[tuple[list[str], str, bool]]) -> list[dict]:
        """This replica's concurrent requests as one encoder call per text kind: fewer, larger encoder requests
        (the encoder's per-request cost is what bounds throughput on small nodes)."""
        out: list[Any] = [None] * len(items)

        async def call(kind: str, rows: list[int]) -> None:
            count = any(items[i][2] for i in rows)
            encoded = await self._encode_bounded([t for i in rows for t in items[i][0]], kind, count)
            start = 0
            for i in rows:
                end = start + len(items[i][0])
                out[i] = {**encoded, "vectors": encoded["vectors"][start:end], "tokens": int(encoded["tokens"][start:end].sum())}
                start = end

        kinds: dict[str, list[int]] = {}
        for i, (_, kind, _) in enumerate(items):
            kinds.setdefault(kind, []).append(i)
        await asyncio.gather(*(call(kind, rows) for kind, rows in kinds.items()))
        return out

    async def _dense_search(self, queries: list[str], k: int, return_text: bool) -> tuple[str, list[list[dict]]]:
        return await self._search_together((queries, k, return_text))

    async def _genret_search(self, queries: list[str], k: int, return_text: bool) -> tuple[str, list[list[dict]]]:
        if return_text:
            raise ApiError(400, "retriever 'genret' returns document ids and scores only; drop return_text",
                           "return_text")
        return self.config.genret.model, await self.genret.search.remote((queries, k))

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0, max_concurrent_batches=2)
    async def _search_together(self, items: list[tuple[list[str], int, bool]]) -> list[tuple[str, list[list[dict]]]]:
        """This replica's concurrent searches as one encoder call and one searcher call (largest k, text if any
        asks), each request then cut back to its own k and fields."""
        queries = [q for texts, _, _ in items for q in texts]
        encoded = await self._encode_bounded(queries, "query", False)
        k, with_text = max(k for _, k, _ in items), any(t for _, _, t in items)
        hits = await self.searcher.search.remote((encoded["vectors"], k, encoded["bundle"], with_text))
        out, start = [], 0
        for texts, want, text in items:
            rows = hits[start:start + len(texts)]
            start += len(texts)
            rows = [[h if text else {f: h[f] for f in ("id", "score", "rank")} for h in row[:want]] for row in rows]
            out.append((encoded["version"], rows))
        return out

    # --- routes ---------------------------------------------------------------------------------------------

    @app.get("/healthz", include_in_schema=False)
    async def healthz(self) -> dict:
        """Liveness (no key needed)."""
        return {"status": "ok"}

    @app.post("/v1/search", response_model=SearchResponse, response_model_exclude_none=True,
              openapi_extra=_openapi_body(SearchRequest))
    async def search(self, request: Request) -> JSONResponse:
        """Top-k documents for one query or a list of queries."""
        self._authorize(request)
        body: SearchRequest = await self._body(request, SearchRequest)
        queries = self._texts(body.query, "query", self.limits.max_queries, "max_queries")
        if body.k > self.limits.max_k:
            raise ApiError(413, f"k={body.k}; the limit is limits.max_k={self.limits.max_k}", "k")
        if body.retriever not in self.retrievers:
            raise ApiError(404, f"retriever {body.retriever!r} is not served here; one of {sorted(self.retrievers)}",
                           "retriever", "not_found_error")
        version, hits = await self.retrievers[body.retriever](queries, body.k, body.return_text)
        if self.mining is not None:
            self.mining.add(body.retriever, version, queries, hits)
        # A Response as is: FastAPI would otherwise re-encode every hit through jsonable_encoder and the model
        # (the schema in /docs is still SearchResponse).
        return JSONResponse({"retriever": body.retriever, "model_version": version,
                             "results": [{"query": q, "hits": h} for q, h in zip(queries, hits)]})

    @app.post("/v1/embeddings", openapi_extra=_openapi_body(EmbeddingsRequest))
    async def embeddings(self, request: Request) -> JSONResponse:
        """OpenAI-compatible embeddings (``encoding_format`` float or base64)."""
        self._authorize(request)
        body: EmbeddingsRequest = await self._body(request, EmbeddingsRequest)
        if body.model not in (RETRIEVER_MODEL_ID, self.config.name):
            raise ApiError(404, f"model {body.model!r} is not served here; use {RETRIEVER_MODEL_ID!r} (GET /v1/models)",
                           "model", "not_found_error")
        texts = self._texts(body.input, "input", self.limits.max_inputs, "max_inputs")
        encoded = await self._encode(texts, body.input_type, count_tokens=True)
        vectors = encoded["vectors"]
        if body.dimensions is not None and body.dimensions != vectors.shape[1]:
            raise ApiError(422, f"dimensions={body.dimensions}, but this model's embeddings have {vectors.shape[1]}",
                           "dimensions")
        if body.encoding_format == "base64":
            data = [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
        else:
            data = [v.tolist() for v in vectors]
        return JSONResponse({"object": "list", "model": RETRIEVER_MODEL_ID,
                             "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(data)],
                             "usage": {"prompt_tokens": encoded["tokens"], "total_tokens": encoded["tokens"]}})

    @app.get("/v1/models")
    async def models(self, request: Request) -> dict:
        """The served models, as OpenAI's ``GET /v1/models``."""
        self._authorize(request)
        return {"object": "list", "data": [{"id": RETRIEVER_MODEL_ID, "object": "model", "owned_by": "synthir"}]}

    @app.get("/v1/info")
    async def info(self, request: Request) -> dict:
        """Model, index size, config hash and model version of every served retriever."""
        self._authorize(request)
        enc, srch = await asyncio.gather(self.encoder.info.remote(), self.searcher.info.remote())
        return {"config_hash": self.config_hash, "model_version": enc["version"],
                "retrievers": {"dense": {"model": enc["encoder"]["model"], "model_version": enc["version"],
                                         "index_version": srch["version"], "index_size": srch["index_size"],
                                         "index": srch["index"], "dim": srch["dim"], "dataset": srch["dataset"],
                                         "bundle": enc["bundle"], "created": enc["created"]},
                               **({"genret": await self.genret.info.remote()} if self.genret is not None else {})},
                "mining": {"enabled": self.mining is not None,
                           "rows_written": self.mining.written if self.mining else 0}}

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(self, request: Request) -> JSONResponse:
        """The OpenAPI schema."""
        if not self.config.auth.public_docs:
            self._authorize(request)
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs(self, request: Request) -> HTMLResponse:
        """Swagger UI over the OpenAPI schema."""
        if not self.config.auth.public_docs:
            self._authorize(request)
        prefix = self.config.route_prefix.rstrip("/")
        return get_swagger_ui_html(openapi_url=f"{prefix}/openapi.json", title="synthir retrieval API")


def key_digest(auth: AuthConfig) -> str | None:
    """SHA-256 of the API key (from ``auth.api_key_env``, else ``auth.api_key_sha256``); None only if anonymous."""
    key = os.environ.get(auth.api_key_env, "")
    if key:
        return hashlib.sha256(key.encode()).hexdigest()
    if auth.api_key_sha256:
        return auth.api_key_sha256
    if auth.allow_anonymous:
        return None
    raise ValueError(f"no API key: set the environment variable {auth.api_key_env} (or auth.api_key_sha256, or "
                     f"auth.allow_anonymous: true for a local experiment)")


def build(config: ServeConfig):
    """The Serve application of ``config``: ingress -> encoder + searcher (+ the generative searcher), the bundle as user_config."""
    from synthir.serving.dense import DenseEncoder, DenseSearcher

    digest = key_digest(config.auth)
    bundle = {"user_config": {"run": config.run}} if config.run else {}  # else the config file's deployments set it
    encoder = DenseEncoder.options(**config.encoder.serve_options("DenseEncoder"), **bundle).bind(
        config.encoder.model_dump(mode="json"))
    searcher = DenseSearcher.options(**config.searcher.serve_options("DenseSearcher"), **bundle).bind(
        config.searcher.model_dump(mode="json"))
    genret = None
    if config.genret is not None:
        from synthir.serving.genret import GenerativeSearcher

        genret = GenerativeSearcher.options(**config.genret.serve_options("GenerativeSearcher")).bind(
            config.genret.model_dump(mode="json"))
    ingress_config = config.model_dump(mode="json") | {"run": None}  # a model swap leaves the ingress as it is
    return RetrievalAPI.options(**config.ingress.serve_options("RetrievalAPI")).bind(encoder, searcher, ingress_config,
                                                                                     digest, genret)


def build_app(args: dict):
    """Application builder for Serve config files (``import_path: synthir.serving.api:build_app``).

    ``args`` holds ServeConfig keys directly, or ``config`` (a YAML path/URI) with optional ``set`` overrides
    (``["run=s3://...", "encoder.batch.max_batch_size=16"]``).
    """
    from synthir.config import ConfigError, load_config, validate

    args = dict(args or {})
    path, overrides = args.pop("config", None), list(args.pop("set", None) or [])
    if path is None:
        if overrides:
            raise ConfigError("serve args: 'set' needs 'config' (or give the keys directly)")
        return build(validate(ServeConfig, args, "<serve args>"))
    if args:
        raise ConfigError(f"serve args: with 'config', give other keys as 'set' overrides, not {sorted(args)}")
    return build(load_config(ServeConfig, path, overrides))
