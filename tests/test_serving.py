"""The retrieval service on Ray Serve, started on 127.0.0.1: results, OpenAI compatibility, auth, limits, mining, swap."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

KEY = "test-key-" + "x" * 24


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _snapshot(folder: str) -> dict[str, str]:
    """Path -> sha256 of every file under a local folder (to prove the service never writes there)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() + f"@{p.stat().st_mtime_ns}"
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus_b(scifact_mini, tmp_path_factory) -> Path:
    """A second BEIR folder: 80 SciFact documents that are NOT in the mini corpus (the swapped-in bundle's)."""
    from synthir.data.beir import load_beir

    mini = {json.loads(line)["_id"] for line in gzip.open(scifact_mini / "corpus.jsonl.gz", "rt")}
    full = load_beir("scifact", splits=()).corpus.to_pylist()
    root = tmp_path_factory.mktemp("corpus_b")
    with gzip.open(root / "corpus.jsonl.gz", "wt") as f:
        for row in [r for r in full if r["id"] not in mini][-80:]:
            f.write(json.dumps({"_id": row["id"], "title": row["title"], "text": row["text"]}) + "\n")
    (root / "queries.jsonl").write_text((scifact_mini / "queries.jsonl").read_text())
    return root


@pytest.fixture(scope="module")
def bundles(scifact_mini, corpus_b, ray_local, s3_server, tmp_path_factory):
    """Bundle A (mini corpus, local disk) and bundle B (80 documents, on S3), both with the bundled MiniLM."""
    from synthir.serving.bundle import BuildConfig, build_dense

    root = tmp_path_factory.mktemp("bundles")
    a = build_dense(BuildConfig(dataset=str(scifact_mini), storage=str(root / "runs")), str(root / "a"))
    # B encodes differently too (E5-style prefixes): a query encoded by one model and searched in the other's
    # index would give other neighbours than either bundle offline.
    b = build_dense(BuildConfig(dataset=str(corpus_b), storage="s3://synthir/serving-runs",
                                encoder={"query_prefix": "query: ", "passage_prefix": "passage: "}), "s3://synthir/bundles/b")
    return {"a": a, "b": b}


@pytest.fixture(scope="module")
def genret_model(tmp_path_factory) -> str:
    """A genret model folder (tiny random decoder + the real SmolLM2 tokenizer + its trie) over 5 documents."""
    from synthir.generative.ids import IdentifierConfig, identifier_tokens, semantic_ids
    from synthir.generative.train import load_tokenizer
    from synthir.generative.trie import TokenTrie
    from tests.genret_fixtures import tiny_decoder

    folder = tiny_decoder(tmp_path_factory.mktemp("genret"))
    tokenizer = load_tokenizer("bundled:smollm2-135m-instruct")
    ids = semantic_ids({f"g{i}": [w] for i, w in enumerate(["tides", "lava", "bees", "glaciers", "tide pools"])},
                       IdentifierConfig())
    TokenTrie([identifier_tokens(tokenizer, ids[d]) for d in ids], list(ids), tokenizer.eos_token_id).save(str(folder))
    return str(folder)


@pytest.fixture(scope="module")
def service(bundles, genret_model, tmp_path_factory):
    """The app on a free loopback port, serving bundle A, with mining (query texts on) into a temp folder."""
    from ray import serve

    from synthir.serving.config import ServeConfig
    from synthir.serving.launch import deploy, url

    os.environ["SYNTHIR_API_KEY"] = KEY
    mining = tmp_path_factory.mktemp("mining")
    cfg = ServeConfig(run=bundles["a"]["uri"], port=_free_port(), encoder={"num_cpus": 0.5},
                      searcher={"num_cpus": 0.25}, ingress={"num_cpus": 0.25},
                      limits={"max_body_bytes": 8192, "max_queries": 8, "max_query_chars": 300, "max_k": 50},
                      mining={"enabled": True, "uri": str(mining), "store_queries": True, "flush_interval_s": 0.5},
                      genret={"model": genret_model, "num_cpus": 0.25, "decode": {"num_beams": 4, "top_k": 4}})
    before = _snapshot(bundles["a"]["uri"])
    deploy(cfg)
    yield {"cfg": cfg, "url": url(cfg), "mining": str(mining), "headers": {"Authorization": f"Bearer {KEY}"}}
    serve.shutdown()
    assert _snapshot(bundles["a"]["uri"]) == before, "the service wrote into the bundle it serves"


def test_index_build_from_a_trained_stage_folder_keeps_its_prefixes(scifact_mini, ray_local, tmp_path):
    """`synthir index build --run <stage>`: the stage's recorded encoder settings travel into the bundle.

    Defined before the tests that start the service: while it runs, its replicas hold the CPUs Ray Data needs."""
    import shutil

    from typer.testing import CliRunner

    from synthir.cli import app
    from synthir.dense.encoder import bundled_minilm_path
    from synthir.serving.bundle import encoder_of_run, read_meta

    stage = tmp_path / "stage1-abc"
    shutil.copytree(bundled_minilm_path(), stage / "model")
    (stage / "_SUCCESS.json").write_text(json.dumps({"encoder": {"model": "elsewhere", "query_prefix": "query: ",
                                                                 "passage_prefix": "passage: ", "max_seq_length": 128}}))
    result = CliRunner().invoke(app, ["index", "build", "--run", str(stage), "--dataset", str(scifact_mini),
                                      "--set", f"storage={tmp_path / 'runs'}", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["documents"] > 0  # stdout: stderr has progress bars
    folder, meta = read_meta(str(stage))
    assert folder == str(stage / "serving")
    assert meta["encoder"]["model"] == str(stage / "model")
    assert (meta["encoder"]["query_prefix"], meta["encoder"]["passage_prefix"]) == ("query: ", "passage: ")
    from synthir.dense.encoder import EncoderConfig

    assert encoder_of_run(str(stage), EncoderConfig(max_seq_length=64)).max_seq_length == 64  # explicit wins
    bad = CliRunner().invoke(app, ["index", "build", "--run", str(tmp_path / "nothing")])
    assert bad.exit_code == 2 and "no finished trained model" in bad.output


def _offline(bundle: dict, queries: list[str], k: int):
    from synthir.dense.encoder import EncoderConfig, encode_queries, load_encoder
    from synthir.dense.index import DenseIndex

    enc = EncoderConfig.model_validate(bundle["encoder"])
    index = DenseIndex.load(bundle["uri"] + "/index")
    vectors = encode_queries(load_encoder(enc), enc, queries)
    return index.search(vectors, k), vectors


QUERIES = ["vitamin D and cancer risk", "stem cell differentiation", "antibiotic resistance in bacteria",
           "blood pressure in elderly patients", "DNA repair mechanisms"]


def test_search_over_http_equals_offline_retrieval(service, bundles):
    r = httpx.post(service["url"] + "/v1/search", json={"query": QUERIES, "k": 10, "return_text": True},
                   headers=service["headers"], timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == bundles["a"]["version"]
    (ids, scores), _ = _offline(bundles["a"], QUERIES, 10)
    for result, want_ids, want_scores, q in zip(body["results"], ids, scores, QUERIES):
        assert result["query"] == q
        assert [h["id"] for h in result["hits"]] == want_ids
        np.testing.assert_allclose([h["score"] for h in result["hits"]], want_scores, atol=1e-5)
        assert [h["rank"] for h in result["hits"]] == list(range(1, 11))
        assert all(h["text"] for h in result["hits"])
    one = httpx.post(service["url"] + "/v1/search", json={"query": QUERIES[0], "k": 3}, headers=service["headers"]).json()
    assert [h["id"] for h in one["results"][0]["hits"]] == ids[0][:3]
    assert "text" not in one["results"][0]["hits"][0]


def test_generative_retriever_is_served_beside_the_dense_one(service, genret_model):
    from synthir.generative.retrieve import DecodeConfig, GenerativeRetriever

    queries = ["what causes tides?", "volcanic lava", "bees"]
    bodies = [httpx.post(service["url"] + "/v1/search", json={"query": queries, "k": k, "retriever": "genret"},
                         headers=service["headers"], timeout=120) for k in (3, 2)]
    assert all(b.status_code == 200 for b in bodies), bodies[0].text
    offline = GenerativeRetriever(genret_model).search(queries, DecodeConfig(num_beams=4, top_k=3))
    for k, body in zip((3, 2), bodies):
        assert body.json()["retriever"] == "genret" and body.json()["model_version"] == genret_model
        for result, want in zip(body.json()["results"], offline):
            assert [h["id"] for h in result["hits"]] == [d for d, _ in want][:k]
            np.testing.assert_allclose([h["score"] for h in result["hits"]], [s for _, s in want][:k], atol=1e-4)
            assert [h["rank"] for h in result["hits"]] == list(range(1, k + 1))
    text = httpx.post(service["url"] + "/v1/search", json={"query": "tides", "retriever": "genret", "return_text": True},
                      headers=service["headers"], timeout=60)
    assert text.status_code == 400 and text.json()["error"]["param"] == "return_text"
    info = httpx.get(service["url"] + "/v1/info", headers=service["headers"], timeout=60).json()
    assert info["retrievers"]["genret"]["documents"] == 5


def test_concurrent_searches_each_get_their_own_k_and_fields(service, bundles):
    """Searches the ingress combines into one encoder and one searcher call still answer each request as asked."""
    asks = [(QUERIES[i % 5], k, i % 2 == 0) for i, k in enumerate((1, 3, 7, 2, 10, 5, 4, 8))]
    (ids, _), _ = _offline(bundles["a"], [q for q, _, _ in asks], 10)

    async def go():
        async with httpx.AsyncClient(timeout=60, headers=service["headers"]) as http:
            return await asyncio.gather(*(http.post(service["url"] + "/v1/search",
                                                    json={"query": q, "k": k, "return_text": t}) for q, k, t in asks))

    for (q, k, with_text), r, want in zip(asks, asyncio.run(go()), ids):
        assert r.status_code == 200, r.text
        hits = r.json()["results"][0]["hits"]
        assert [h["id"] for h in hits] == want[:k], (q, k)
        assert all(("text" in h) == with_text for h in hits)

def test_openai_client_embeddings_equal_offline_encoder(service, bundles):
    import openai

    client = openai.OpenAI(base_url=service["url"] + "/v1", api_key=KEY)
    _, want = _offline(bundles["a"], QUERIES, 1)
    got = client.embeddings.create(model="dense", input=QUERIES)  # the SDK asks for base64 by default
    assert [d.index for d in got.data] == list(range(len(QUERIES)))
    np.testing.assert_allclose(np.array([d.embedding for d in got.data]), want, atol=1e-5)
    floats = client.embeddings.create(model="dense", input=QUERIES[0], encoding_format="float")
    np.testing.assert_allclose(floats.data[0].embedding, want[0], atol=1e-5)
    assert got.usage.prompt_tokens > len(QUERIES) and got.model == "dense"
    assert [m.id for m in client.models.list()] == ["dense"]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=service["url"] + "/v1", api_key="wrong").embeddings.create(model="dense", input="x")


def test_every_route_but_healthz_needs_the_key(service):
    u = service["url"]
    assert httpx.get(u + "/healthz").status_code == 200
    for method, path, body in (("post", "/v1/search", {"query": "x"}), ("post", "/v1/embeddings", {"input": "x"}),
                               ("get", "/v1/info", None), ("get", "/v1/models", None), ("get", "/docs", None),
                               ("get", "/openapi.json", None)):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": "Basic " + KEY}):
            r = httpx.request(method, u + path, json=body, headers=headers)
            assert r.status_code == 401, (path, headers, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(u + "/docs", headers=service["headers"]).status_code == 200
    spec = httpx.get(u + "/openapi.json", headers=service["headers"]).json()
    assert {"/v1/search", "/v1/embeddings", "/v1/info"} <= set(spec["paths"])


@pytest.mark.parametrize("body,status,needle", [
    ({"query": "x" * 301}, 413, "max_query_chars=300"),
    ({"query": ["q"] * 9}, 413, "max_queries=8"),
    ({"query": "q", "k": 51}, 413, "max_k=50"),
    ({"query": "q", "k": 0}, 422, "k: Input should be greater than or equal to 1"),
    ({"query": ["a", 1]}, 422, "query"),
    ({"query": []}, 422, "query is empty"),
    ({"query": "  "}, 422, "blank"),
    ({"query": 5}, 422, "query"),
    ({"query": "q", "retriever": "sparse"}, 404, "retriever 'sparse'"),
    ({"query": "q", "nonsense": 1}, 422, "unknown field 'nonsense'"),
    ({}, 422, "query"),
])
def test_bad_search_requests_are_4xx_naming_the_limit(service, body, status, needle):
    r = httpx.post(service["url"] + "/v1/search", json=body, headers=service["headers"])
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]


@pytest.mark.parametrize("raw,status,needle", [
    (b'{"query": ', 422, "not valid JSON"),
    (b"[1, 2]", 422, "JSON object"),
    (b"\xff\xfe", 422, "not valid JSON"),
    (b'{"query": "\\ud800"}', 422, "lone surrogate"),
    (b'{"query": ' + b"[" * 1500 + b"]" * 1500 + b"}", 422, "not valid JSON"),
    (b'{"query": "q", "k": ' + b"9" * 4400 + b"}", 422, "not valid JSON"),
    (b'{"query": "' + b"y" * 9000 + b'"}', 413, "max_body_bytes=8192"),
])
def test_malformed_or_oversized_bodies_are_4xx(service, raw, status, needle):
    r = httpx.post(service["url"] + "/v1/search", content=raw, headers={**service["headers"], "content-type": "application/json"})
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]
    chunked = httpx.post(service["url"] + "/v1/search", content=iter([raw]), headers=service["headers"])  # no length
    assert chunked.status_code == status and needle in chunked.json()["error"]["message"]


def test_embeddings_limits_and_dimensions(service):
    h, u = service["headers"], service["url"] + "/v1/embeddings"
    r = httpx.post(u, json={"input": "x", "dimensions": 128}, headers=h)
    assert r.status_code == 422 and "384" in r.json()["error"]["message"]
    r = httpx.post(u, json={"input": [[1, 2, 3]]}, headers=h)
    assert r.status_code == 422
    passage = httpx.post(u, json={"input": "x", "input_type": "passage"}, headers=h)
    assert passage.status_code == 200


def test_mining_log_written_read_back_and_turned_into_comparison_requests(service, bundles, tmp_path):
    from synthir.llm.batchfile import read_requests
    from synthir.serving.mining import read_log, to_comparisons
    from synthir.synth.answer import MissingAnswers
    from synthir.synth.preferences import PreferenceConfig

    mined = ["mining query one about insulin", "mining query two about tumours"]
    r = httpx.post(service["url"] + "/v1/search", json={"query": mined, "k": 10}, headers=service["headers"])
    assert r.status_code == 200
    served = {res["query"]: [h["id"] for h in res["hits"]] for res in r.json()["results"]}
    deadline, log = time.time() + 30, None
    while time.time() < deadline:
        try:
            log = read_log(service["mining"])
            if set(mined) <= set(log["query"].to_pylist()):
                break
        except OSError:
            pass
        time.sleep(0.5)
    assert log is not None, "no mining-log part within 30 s"
    rows = {row["query"]: row for row in log.to_pylist() if row["query"] in mined}
    assert set(rows) == set(mined)
    for q, row in rows.items():
        assert row["doc_ids"] == served[q] and len(row["scores"]) == 10
        assert row["model_version"] == bundles["a"]["version"] and row["retriever"] == "dense"
        assert row["query_hash"] == hashlib.sha256(q.encode()).hexdigest()[:16]
    prefs = PreferenceConfig(engine="batch", model="judge-x", storage=str(tmp_path))
    time.sleep(1.5)  # every earlier search of this module is in a part by now
    newest = {}
    for row in sorted(read_log(service["mining"]).to_pylist(), key=lambda row: row["time"]):
        if row["retriever"] == "dense":  # the generative retriever's searches are logged too, and not compared here
            newest[row["query_hash"]] = min(5, len(row["doc_ids"]))
    with pytest.raises(MissingAnswers) as info:
        to_comparisons(service["mining"], bundles["a"]["uri"], prefs, str(tmp_path / "triples.parquet"), k=5)
    requests = read_requests(info.value.uri)
    assert len(requests) == sum(n * (n - 1) // 2 for n in newest.values() if n >= 2)  # C(n, 2) pairs per query
    for q in mined:
        qid = "log-" + hashlib.sha256(q.encode()).hexdigest()[:16]
        mine = [r for cid, r in requests.items() if cid.startswith(f"syntriever/compare/{qid}/")]
        assert len(mine) == 10
        assert {cid.split("/")[3] for cid in (r.custom_id for r in mine)} | {r.custom_id.split("/")[4] for r in mine} \
            == set(served[q][:5])
        assert all(q in r.messages[-1][1] and r.model == "judge-x" for r in mine)
    from typer.testing import CliRunner

    from synthir.cli import app

    cli = CliRunner().invoke(app, ["mine-log", "to-requests", "--log", service["mining"], "--run", bundles["a"]["uri"],
                                   "--model", "judge-x", "--storage", str(tmp_path / "cli")])
    assert cli.exit_code == 3 and "OpenAI Batch input file" in cli.stdout, cli.output  # exported, nothing sent


def test_model_swap_under_load_loses_no_request(service, bundles, corpus_b):
    """Redeploy with bundle B while 4 clients search; 0 failures, every answer consistent with its version."""
    from synthir.serving.launch import deploy

    want = {bundles[x]["version"]: dict(zip(QUERIES, _offline(bundles[x], QUERIES, 5)[0][0])) for x in ("a", "b")}
    stop = threading.Event()
    results: list[tuple[int, str | None, list[str]]] = []
    errors: list[str] = []

    async def client(i: int):
        async with httpx.AsyncClient(timeout=60) as http:
            n = 0
            while not stop.is_set() and n < 400:  # bounded: at most 400 requests per client
                n += 1
                try:
                    r = await http.post(service["url"] + "/v1/search", json={"query": QUERIES[i % 5], "k": 5},
                                        headers=service["headers"])
                    body = r.json() if r.status_code == 200 else None
                    results.append((r.status_code, body and body["model_version"], QUERIES[i % 5],
                                    [h["id"] for h in body["results"][0]["hits"]] if body else []))
                except Exception as e:  # a dropped connection is a lost request
                    errors.append(repr(e))

    async def load():
        await asyncio.gather(*(client(i) for i in range(4)))

    loader = threading.Thread(target=asyncio.run, args=(load(),))
    loader.start()
    time.sleep(2)
    deploy(service["cfg"], run=bundles["b"]["uri"], timeout_s=180)
    deadline = time.time() + 60
    while time.time() < deadline:
        info = httpx.get(service["url"] + "/v1/info", headers=service["headers"]).json()
        if info["model_version"] == bundles["b"]["version"] and info["retrievers"]["dense"]["index_size"] == 80:
            break
        time.sleep(0.5)
    time.sleep(2)
    stop.set()
    loader.join(120)
    assert info["model_version"] == bundles["b"]["version"] and info["retrievers"]["dense"]["index_size"] == 80
    statuses = [s for s, _, _, _ in results]
    assert not errors and statuses.count(200) == len(statuses), (errors[:3], [s for s in statuses if s != 200][:5])
    versions = [v for _, v, _, _ in results]
    assert versions.count(bundles["a"]["version"]) > 0 and versions.count(bundles["b"]["version"]) > 0
    first_b = versions.index(bundles["b"]["version"])
    for _, v, q, ids in results:  # every answer is exactly what its version gives offline: no mixed versions
        assert ids == want[v][q], (v, q)
    assert len(results) > 20, len(results)
    assert versions[first_b:].count(bundles["a"]["version"]) <= 4  # at most the requests in flight at the swap
    deploy(service["cfg"], timeout_s=180)  # back to A for any later test


def test_mining_log_keeps_no_query_text_by_default(tmp_path):
    from synthir.serving.config import MiningConfig
    from synthir.serving.mining import MiningLog, latest_topk, read_log

    log = MiningLog(MiningConfig(enabled=True, uri=str(tmp_path), flush_rows=3), replica="r/1")
    hits = [[{"id": f"d{i}", "score": 1.0 - i / 10} for i in range(5)]]

    async def go():
        for q in ("secret one", "secret two", "secret three"):
            log.add("dense", "v1", [q], hits)
        assert log.due()
        await log.flush()

    asyncio.run(go())
    table = read_log(str(tmp_path))
    assert table.num_rows == 3 and table["query"].null_count == 3
    assert b"secret" not in b"".join(p.read_bytes() for p in tmp_path.glob("part-*.parquet"))
    assert [p.name.split("-")[2] for p in tmp_path.glob("part-*.parquet")] == ["r_1"]
    with pytest.raises(ValueError, match="store_queries"):
        latest_topk(table, 5)


def test_serve_needs_a_key_unless_anonymous_is_explicit(monkeypatch):
    from synthir.serving.api import key_digest
    from synthir.serving.config import AuthConfig

    monkeypatch.delenv("SYNTHIR_API_KEY", raising=False)
    with pytest.raises(ValueError, match="SYNTHIR_API_KEY"):
        key_digest(AuthConfig())
    assert key_digest(AuthConfig(allow_anonymous=True)) is None
    digest = hashlib.sha256(b"k").hexdigest()
    assert key_digest(AuthConfig(api_key_sha256=digest)) == digest
    monkeypatch.setenv("SYNTHIR_API_KEY", "k")
    assert key_digest(AuthConfig()) == digest


def test_a_folder_without_a_bundle_is_a_clear_error(tmp_path):
    from synthir.serving.bundle import BundleError, resolve

    with pytest.raises(BundleError, match=f"{tmp_path}.*synthir index build"):
        resolve(str(tmp_path))


@pytest.mark.parametrize("name", ["dense.yaml", "dense-gpu.yaml"])
def test_serve_config_files_are_valid(name):
    """Each serve/*.yaml is a valid Serve config whose args are a ServeConfig and whose import path exists."""
    import importlib

    import yaml
    from ray.serve.schema import ServeDeploySchema

    from synthir.config import validate
    from synthir.serving.config import ServeConfig
    from synthir.serving.launch import RETRIEVER_DEPLOYMENTS

    path = Path(__file__).resolve().parents[1] / "serve" / name
    schema = ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))
    for app in schema.applications:
        module, attr = app.import_path.split(":")
        assert callable(getattr(importlib.import_module(module), attr))
        validate(ServeConfig, app.args, str(path))
        runs = {d.name: d.user_config["run"] for d in app.deployments}
        assert set(runs) == set(RETRIEVER_DEPLOYMENTS) and len(set(runs.values())) == 1, runs


def test_app_config_keeps_the_bundle_out_of_the_code_version(monkeypatch):
    """A model swap changes only user_config, so Serve updates the replicas in place instead of replacing them."""
    from ray.serve._private.deploy_utils import get_app_code_version
    from ray.serve.schema import ServeApplicationSchema

    from synthir.serving.config import ServeConfig
    from synthir.serving.launch import app_config

    monkeypatch.setenv("SYNTHIR_API_KEY", "secret-Zq81")
    cfg = ServeConfig(run="/bundles/a", port=8000)
    a, b = app_config(cfg), app_config(cfg, run="s3://bucket/bundles/b")
    assert "secret-Zq81" not in json.dumps(a)  # only the key's digest travels in the Serve config
    assert a["args"]["auth"]["api_key_sha256"] == hashlib.sha256(b"secret-Zq81").hexdigest()
    assert [d["user_config"]["run"] for d in b["deployments"]] == ["s3://bucket/bundles/b"] * 2
    versions = {get_app_code_version(ServeApplicationSchema.model_validate(x)) for x in (a, b)}
    assert len(versions) == 1
    other = app_config(cfg.model_copy(update={"limits": cfg.limits.model_copy(update={"max_k": 5})}))
    assert get_app_code_version(ServeApplicationSchema.model_validate(other)) not in versions

