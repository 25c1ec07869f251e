"""The ``synthir`` command line (typer)."""

from __future__ import annotations

import logging
import os
import sys
from typing import Optional

import typer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train retrievers from LLM-written synthetic data, on Ray.")
data_app = typer.Typer(no_args_is_help=True, help="Bundled datasets: list them, export them to storage.")
app.add_typer(data_app, name="data")
synth_app = typer.Typer(no_args_is_help=True, help="LLM synthesis: Syntriever stage 1, OpenAI Batch import.")
app.add_typer(synth_app, name="synth")
run_app = typer.Typer(no_args_is_help=True, help="Whole recipes, step by step, reusing what exists.")
app.add_typer(run_app, name="run")
index_app = typer.Typer(no_args_is_help=True, help="Serving bundles: a model, its faiss index and documents.")
app.add_typer(index_app, name="index")
mine_app = typer.Typer(no_args_is_help=True, help="Online top-K mining logs of the retrieval service.")
app.add_typer(mine_app, name="mine-log")

SetOpt = typer.Option(None, "--set", help="override a config key: --set encoder.batch_size=32 (repeatable)")
JsonOpt = typer.Option(False, "--json", help="print one JSON object as the last line of stdout")
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config (path or URI)")


def _fail(err: Exception) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _setup_logging() -> None:
    """synthir's own INFO lines on stderr; other libraries' only from WARNING up."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("synthir").setLevel(logging.INFO)


@app.command("eval")
def eval_cmd(
    dataset: Optional[str] = typer.Option(None, help="bundled name (scifact, pir/allsides) or a BEIR folder path/URI"),
    retriever: Optional[str] = typer.Option(None, help="bm25, dense or genret"),
    model: Optional[str] = typer.Option(None, help="dense: encoder path, s3:// URI or name; genret: a genret model "
                                        "folder or run step folder"),
    collapse_identical: bool = typer.Option(False, "--collapse-identical", help="byte-identical documents count as one"),
    split: Optional[str] = typer.Option(None, help="qrels split (default test)"),
    storage_root: Optional[str] = typer.Option(None, "--storage", help="run output root: path or s3:// URI (default ./runs)"),
    config: Optional[str] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Evaluate BM25, a dense encoder or a generative retriever on a dataset split (default: nDCG@1/3/5/10, Recall@100)."""
    from synthir.config import ConfigError, load_config
    from synthir.data.beir import DataError
    from synthir.eval.report import format_table, json_line
    from synthir.eval.run import EvalConfig, run_eval
    from synthir.storage import StorageError

    _setup_logging()
    overrides = list(set_ or [])
    model_key = "genret.model" if retriever == "genret" else "encoder.model"
    if retriever == "genret" and not any(o.startswith("metrics=") for o in overrides):
        from synthir.eval.metrics import GENERATIVE_METRICS

        overrides.append(f"metrics=[{','.join(GENERATIVE_METRICS)}]")  # HIT@k / MAP / MRR, as Wen et al. report
    if collapse_identical:
        overrides.append("collapse_identical=true")
    for key, value in (("dataset", dataset), ("retriever", retriever), (model_key, model), ("split", split), ("storage", storage_root)):
        if value is not None:
            overrides.append(f"{key}={value}")
    try:
        cfg = load_config(EvalConfig, config, overrides)
        results = run_eval(cfg)
    except (ConfigError, DataError, StorageError, ValueError) as e:
        _fail(e)
    row = {"retriever": results["model"], **results["metrics"], "wall_s": results["wall_s"]}
    typer.echo(f"\n{results['dataset']} / {results['split']}  ({len(results['metrics'])} metrics, %)")
    typer.echo(format_table([row], ["retriever", *results["metrics"], "wall_s"], percent=list(results["metrics"])))
    typer.echo(f"results: {results['run_dir']}")
    if as_json:
        typer.echo(json_line({**results["metrics"], "wall_s": results["wall_s"], "run_dir": results["run_dir"]}))


@data_app.command("list")
def data_list() -> None:
    """List the bundled datasets with their sizes."""
    from synthir.data.beir import BUNDLED, available_splits, bundled_root, load_beir

    for name in BUNDLED:
        splits = available_splits(bundled_root(name))
        ds = load_beir(name, splits=splits)
        typer.echo(f"{name:18s} corpus {ds.corpus.num_rows:6d}  queries {ds.queries.num_rows:5d}  splits {', '.join(f'{s}:{len(ds.qrels_dict(s))}' for s in splits)}")


@data_app.command("export")
def data_export(name: str, dest: str = typer.Argument(..., help="target folder: path or s3:// URI")) -> None:
    """Copy a bundled dataset (BEIR layout, gzip'd) to a folder or bucket."""
    from synthir import storage
    from synthir.data.beir import BUNDLED, bundled_root

    if name not in BUNDLED:
        _fail(ValueError(f"unknown bundled dataset {name!r}; one of {', '.join(BUNDLED)}"))
    written = storage.copy_tree(bundled_root(name), dest)
    typer.echo(f"wrote {len(written)} files to {dest}")


@synth_app.command("syntriever")
def synth_syntriever(
    dataset: str = typer.Option("scifact", help="bundled name or BEIR folder path/URI"),
    split: str = typer.Option("train"),
    engine: str = typer.Option("recorded", help="recorded (bundled SciFact teacher answers), http (OpenAI-compatible endpoint), hf (local model) or batch (export an OpenAI Batch file)"),
    model: Optional[str] = typer.Option(None, help="teacher model name (http, batch)"),
    base_url: Optional[str] = typer.Option(None, help="http: endpoint, e.g. http://127.0.0.1:8000/v1 (key from $OPENAI_API_KEY)"),
    concurrency: Optional[int] = typer.Option(None, help="http: requests in flight"),
    max_tokens: Optional[int] = typer.Option(None, help="override the prompts' max_tokens"),
    ray_actors: int = typer.Option(0, help="0: answer from this process; N: a Ray Data pool of N engine actors (--concurrency is per actor)"),
    storage_root: str = typer.Option("./runs", "--storage"),
    limit: Optional[int] = typer.Option(None, help="only the first N queries"),
    as_json: bool = JsonOpt,
) -> None:
    """Syntriever stage 1: q_cot, p+, p-, the relabel verdict and final positive/negative lists per query."""
    from synthir.config import ConfigError, load_config
    from synthir.data.beir import DataError
    from synthir.eval.report import format_table, json_line
    from synthir.synth.answer import MissingAnswers
    from synthir.synth.syntriever import Stage1Config, synthesize_stage1

    _setup_logging()
    overrides = [f"dataset={dataset}", f"split={split}", f"engine={engine}", f"storage={storage_root}"]
    overrides += [f"model={model}"] if model else []
    overrides += [f"limit={limit}"] if limit else []
    overrides += [f"http.base_url={base_url}"] if base_url else []
    overrides += [f"http.concurrency={concurrency}"] if concurrency else []
    overrides += [f"max_tokens={max_tokens}"] if max_tokens else []
    overrides += [f"ray_actors={ray_actors}", *( [f"hf.model={model}"] if engine == "hf" and model else [])]
    overrides += [f"vllm.model={model}"] if engine == "vllm" and model else []
    try:
        summary = synthesize_stage1(load_config(Stage1Config, None, overrides))
    except MissingAnswers as e:
        typer.echo(str(e))
        raise typer.Exit(3)
    except (ConfigError, DataError, ValueError, RuntimeError) as e:
        _fail(e)
    keys = ["rows", "requests_sent", "from_store", "relabeled", "relabel_rate", "parse_failures", "wall_s"]
    typer.echo(format_table([summary], keys))
    for m, t in summary["tokens"].items():
        typer.echo(f"{m}: {t['requests']} requests, {t['input_tokens']} input / {t['output_tokens']} output tokens (0 = not reported)")
    typer.echo(f"table: {summary['table']}")
    if as_json:
        typer.echo(json_line({k: summary[k] for k in keys}))


@synth_app.command("corpus")
def synth_corpus(
    config: Optional[str] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    as_json: bool = JsonOpt,
) -> None:
    """One prompt over every row of a corpus: Ray Data, autoscaling engine actors, Parquet parts, resumable."""
    from synthir.config import ConfigError, load_config
    from synthir.eval.report import format_table, json_line
    from synthir.storage import StorageError
    from synthir.synth.corpus import CorpusSynthConfig, synthesize_corpus

    _setup_logging()
    if not config:
        _fail(ValueError("synth corpus needs --config (see configs/synth-corpus-local.yaml)"))
    try:
        summary = synthesize_corpus(load_config(CorpusSynthConfig, config, list(set_ or [])))
    except (ConfigError, StorageError, ValueError) as e:
        _fail(e)
    except RuntimeError as e:  # requests failed after retries: what was answered is stored, a rerun resumes
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    keys = ["rows", "requests_sent", "from_store", "failed", "wall_s", "rows_per_s"]
    typer.echo(format_table([summary], keys))
    typer.echo(f"output: {summary['output']} ({len(summary['parts'])} parts{', reused' if summary['reused'] else ''})")
    if as_json:
        typer.echo(json_line({k: summary[k] for k in [*keys, "output", "reused"]}))


@synth_app.command("import")
def synth_import(
    requests: str = typer.Option(..., help="OpenAI Batch input JSONL (path or URI, .gz ok)"),
    answers: str = typer.Option(..., help="OpenAI Batch output JSONL"),
    storage_root: str = typer.Option("./runs", "--storage"),
) -> None:
    """Import OpenAI Batch answers into the response store, bound to their requests by custom_id."""
    from synthir import storage
    from synthir.data.beir import DataError
    from synthir.llm.batchfile import import_answers
    from synthir.llm.store import ResponseStore

    try:
        counts = import_answers(requests, answers, ResponseStore(storage.join(storage_root, "responses")))
    except DataError as e:
        _fail(e)
    typer.echo(f"imported {counts['imported']} answers ({counts['failed']} failed requests skipped)")


@app.command("serve-llm")
def serve_llm(
    model: str = typer.Option("bundled:smollm2-135m-instruct", help="local HF folder, the bundled SmolLM2, or 'echo' (load tests)"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    batch_size: int = typer.Option(8),
    latency_ms: float = typer.Option(0.0, help="added latency per request (benchmarks)"),
) -> None:
    """An OpenAI-compatible chat server (/v1/chat/completions with usage) in front of a local model."""
    from synthir.serving.llm_server import serve

    serve(host=host, port=port, model=model, latency_ms=latency_ms, batch_size=batch_size)


@index_app.command("build")
def index_build(
    run: Optional[str] = typer.Option(None, help="a trained stage folder (its model/ is indexed; bundle in <run>/serving/)"),
    model: Optional[str] = typer.Option(None, help="or an encoder: path, s3:// URI or bundled:all-MiniLM-L6-v2"),
    out: Optional[str] = typer.Option(None, help="bundle folder (default <run>/serving, or ./runs/serving/<dataset>-<hash>)"),
    dataset: Optional[str] = typer.Option(None, help="corpus to index: bundled name or BEIR folder (default scifact)"),
    config: Optional[str] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Build a retriever bundle (encoder + faiss index + documents) that `synthir serve` serves."""
    from synthir import storage
    from synthir.config import ConfigError, config_hash, load_config
    from synthir.data.beir import DataError
    from synthir.eval.report import json_line
    from synthir.runtime import init_ray
    from synthir.serving.bundle import BuildConfig, BundleError, build_dense, encoder_of_run

    _setup_logging()
    overrides = list(set_ or [])
    overrides += [f"dataset={dataset}"] if dataset else []
    if run and model:
        _fail(ValueError("give --run (a trained stage folder) or --model (an encoder), not both"))
    overrides += [f"encoder.model={model}"] if model else []
    try:
        cfg = load_config(BuildConfig, config, overrides)
        if run:
            cfg.encoder = encoder_of_run(run, cfg.encoder)
        target = out or (storage.join(run, "serving") if run else
                         storage.join(cfg.storage, "serving", f"{cfg.dataset.rstrip('/').rsplit('/', 1)[-1]}-{config_hash(cfg)}"))
        init_ray()
        meta = build_dense(cfg, target)
    except (ConfigError, DataError, BundleError, storage.StorageError, ValueError) as e:
        _fail(e)
    typer.echo(f"bundle {meta['uri']}: {meta['documents']} documents, dim {meta['dim']}, version {meta['version']} "
               f"({meta['build_s']} s)\nserve it: synthir serve --run {meta['uri']}")
    if as_json:
        typer.echo(json_line({k: meta[k] for k in ("uri", "version", "documents", "dim", "build_s")}))


@app.command("serve")
def serve_cmd(
    run: Optional[str] = typer.Option(None, help="a retriever bundle, or a stage folder with one in serving/"),
    config: Optional[str] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    host: Optional[str] = typer.Option(None, help="bind address (default 127.0.0.1)"),
    port: Optional[int] = typer.Option(None, help="HTTP port (default 8000)"),
    tuned: bool = typer.Option(False, help="Ray Serve's HAProxy ingress and same-loop flags (less CPU per request)"),
) -> None:
    """Serve a trained retriever on Ray Serve: /v1/search, OpenAI-compatible /v1/embeddings, /v1/info, /docs."""
    import secrets

    from synthir.config import ConfigError, load_config
    from synthir.serving.bundle import BundleError, read_meta
    from synthir.serving.config import ServeConfig
    from synthir.serving.launch import start, url

    _setup_logging()
    overrides = list(set_ or [])
    overrides += [f"run={run}"] if run else []
    overrides += [f"host={host}"] if host else []
    overrides += [f"port={port}"] if port else []
    try:
        cfg = load_config(ServeConfig, config, overrides)
        if not cfg.run:
            raise ConfigError("nothing to serve: pass --run <bundle or stage folder> (or run: in the config)")
        folder, meta = read_meta(cfg.run)
    except (ConfigError, BundleError) as e:
        _fail(e)
    env = cfg.auth.api_key_env
    if not os.environ.get(env) and not cfg.auth.allow_anonymous:
        os.environ[env] = secrets.token_urlsafe(32)
        typer.echo(f"{env} was not set: this run's key is below (set {env} yourself to choose one)\n"
                   f"  export {env}={os.environ[env]}")
    typer.echo(f"serving {folder} (version {meta['version']}, {meta['documents']} documents) at {url(cfg)}\n"
               f"  API key: the environment variable {env}; docs: {url(cfg)}/docs; Ctrl-C stops")
    start(cfg, blocking=True, tuned=tuned)


@mine_app.command("to-requests")
def mine_log_to_requests(
    log: str = typer.Option(..., help="the mining log folder (mining.uri of the service)"),
    run: str = typer.Option(..., help="the bundle the log was served from (its documents are the candidates)"),
    out: str = typer.Option("./runs/mined/triples.parquet", help="triples table written once every pair is answered"),
    k: int = typer.Option(5, help="top-K of each logged query compared in pairs (paper: 5)"),
    engine: str = typer.Option("batch", help="batch (export an OpenAI Batch file), http, hf or vllm"),
    model: Optional[str] = typer.Option(None, help="the judge model (part of every request; default the bundled SmolLM2-135M)"),
    base_url: Optional[str] = typer.Option(None, help="http: endpoint, e.g. http://127.0.0.1:8000/v1"),
    pairs: Optional[int] = typer.Option(None, help="pairs per query (default all C(k,2))"),
    storage_root: str = typer.Option("./runs", "--storage"),
    as_json: bool = JsonOpt,
) -> None:
    """Turn a mining log into stage-2 comparison requests (and triples) through the synthesis engines."""
    from synthir.config import ConfigError, load_config
    from synthir.eval.report import json_line
    from synthir.serving.bundle import BundleError
    from synthir.serving.mining import to_comparisons
    from synthir.storage import StorageError
    from synthir.synth.answer import MissingAnswers
    from synthir.synth.preferences import PreferenceConfig

    _setup_logging()
    overrides = [f"engine={engine}", f"storage={storage_root}"]
    overrides += [f"model={model or 'bundled:smollm2-135m-instruct'}"]
    overrides += [f"http.base_url={base_url}"] if base_url else []
    overrides += [f"pairs={pairs}"] if pairs else []
    try:
        summary = to_comparisons(log, run, load_config(PreferenceConfig, None, overrides), out, k)
    except MissingAnswers as e:
        typer.echo(str(e))
        raise typer.Exit(3)
    except (ConfigError, BundleError, StorageError, ValueError, RuntimeError) as e:
        _fail(e)
    typer.echo(f"{summary['queries']} logged queries ({summary['by_model_version']} by model version): "
               f"{summary['pairs']} pairs, {summary['triples']} triples, {summary['requests_sent']} requests sent\n"
               f"triples: {summary['table']}")
    if as_json:
        typer.echo(json_line({k: summary[k] for k in ("queries", "pairs", "triples", "requests_sent", "parse_failures")}))


@run_app.command("syntriever")
def run_syntriever(
    config: Optional[str] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    steps: str = typer.Option(",".join(("synth", "stage1", "mine", "preferences", "stage2", "eval")),
                              help="comma-separated steps to run"),
    as_json: bool = JsonOpt,
) -> None:
    """Syntriever end to end: stage-1 synthesis and training, top-K mining, LLM preferences, stage 2, evaluation."""
    from synthir.config import ConfigError, load_config
    from synthir.data.beir import DataError
    from synthir.eval.report import benchmark_line, bundled_benchmark, json_line
    from synthir.pipelines.syntriever import SyntrieverConfig, SyntrieverPipeline
    from synthir.runtime import init_ray, ray_log_dir
    from synthir.storage import StorageError
    from synthir.synth.answer import MissingAnswers

    _setup_logging()
    try:
        cfg = load_config(SyntrieverConfig, config, list(set_ or []))
        pipeline = SyntrieverPipeline(cfg)
        cut = pipeline.cut
        if cut["corpus"] < cut["full_corpus"] or cfg.subsample.train_queries or cfg.subsample.test_queries:
            typer.echo(f"SUBSAMPLED run: {cut['queries']} queries per split, corpus {cut['corpus']} of "
                       f"{cut['full_corpus']} documents (all relevant ones kept); numbers are not comparable with "
                       f"full-corpus results.")
        if cfg.stage2 is not None:
            p = cfg.preferences
            judge = ("the recorded SciFact judge (real teacher answers, 0 requests)" if p.engine == "recorded"
                     else f"{p.model} ({p.engine})")
            typer.echo(f"stage 2: {judge} compares {p.max_queries or 'all'} queries x {p.pairs or 'all'} pairs of "
                       f"the stage-1 top-{cfg.mining_k}"
                       + (f"; pairs it lacks: {'left out' if p.unrecorded == 'skip' else p.fallback_model}"
                          if p.engine == "recorded" else "") + ".")
        if not cfg.ray.log_to_driver:
            init_ray(cfg.ray)
            typer.echo(f"Ray workers' logs (training, encoding): {ray_log_dir()}")
        out = pipeline.run(tuple(s.strip() for s in steps.split(",") if s.strip()))
    except MissingAnswers as e:
        typer.echo(str(e))
        raise typer.Exit(3)
    except (ConfigError, DataError, StorageError, ValueError) as e:
        _fail(e)
    if "preferences" in out:
        p = out["preferences"]
        typer.echo(f"preferences: {p['triples']} triples from {p['pairs']} pairs, {p['parse_failures']} parse failures, "
                   f"{p['swap_disagreements']} swap disagreements, {p['requests_sent']} requests sent")
        if "coverage" in p:
            j = p["judged_by"]
            rest = f"{j['live']} asked of the fallback judge" if j["live"] else "left out"
            typer.echo(f"recorded judge coverage: {p['coverage']:.1%} of comparisons ({j['recorded']} as recorded, "
                       f"{j['recorded_reversed']} shown the other way round, {j['unrecorded']} without a recorded "
                       f"answer: {rest})")
        if (g := p.get("gold_agreement")) and g["agreement"] is not None:
            typer.echo(f"judge agreement with the train qrels: prefers the gold document in {g['agreement']:.1%} "
                       f"of {g['pairs_with_one_gold']} pairs holding exactly one")
    if out.get("table"):
        typer.echo(f"\n{cfg.dataset} / {cfg.eval_split} (%)\n{out['table']}\nplot: {out['plot']}")
        if (reference := bundled_benchmark(cfg.dataset)) and cfg.eval_split == reference["split"]:
            typer.echo("\n" + benchmark_line(reference))
    if as_json:
        typer.echo(json_line({f"{r['row']}/{m}": r[m] for r in out["rows"] for m in cfg.eval_metrics}
                             | {"timings_s": out["timings_s"]}))


@run_app.command("genret")
def run_genret(
    config: Optional[str] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    steps: str = typer.Option("synth,sft,mine,rpo,eval", help="comma-separated steps to run"),
    as_json: bool = JsonOpt,
) -> None:
    """Generative retrieval end to end: synthesis, identifiers + SFT, mined-negative RPO, HIT@k / MRR@10 evaluation."""
    from synthir.config import ConfigError, load_config
    from synthir.data.beir import DataError
    from synthir.eval.report import json_line
    from synthir.pipelines.genret import GenretConfig, GenretPipeline
    from synthir.runtime import init_ray, ray_log_dir
    from synthir.storage import StorageError
    from synthir.synth.answer import MissingAnswers

    _setup_logging()
    try:
        cfg = load_config(GenretConfig, config, list(set_ or []))
        pipeline = GenretPipeline(cfg)
        docs, distinct = pipeline.dataset.corpus.num_rows, pipeline.distinct_documents
        queries = len(pipeline.dataset.qrels_dict(cfg.eval_split))
        collapsed = (f"{distinct} distinct texts of {pipeline.raw_documents} documents, identical ones collapsed"
                     if cfg.corpus.collapse_identical else f"{pipeline.raw_documents} documents, identical texts kept apart")
        typer.echo(f"{cfg.dataset}: {collapsed}; " + (f"SUBSAMPLED to {docs} documents and {queries} test queries: "
                   "numbers are not comparable with full runs." if docs < distinct or cfg.subsample.test_queries
                   else f"all {queries} test queries."))
        typer.echo(f"teacher: {'the recorded PIR teacher (real answers, 0 requests)' if cfg.synth.engine == 'recorded' else cfg.synth.model + ' (' + cfg.synth.engine + ')'}; "
                   f"decoder: {cfg.sft.base_model}, {cfg.ids.kind} IDs, {cfg.sft_data.mixing} Context2ID")
        if not cfg.ray.log_to_driver:
            init_ray(cfg.ray)
            typer.echo(f"Ray workers' logs (training): {ray_log_dir()}")
        out = pipeline.run(tuple(s.strip() for s in steps.split(",") if s.strip()))
    except MissingAnswers as e:
        typer.echo(str(e))
        raise typer.Exit(3)
    except (ConfigError, DataError, StorageError, ValueError) as e:
        _fail(e)
    if "synth" in out:
        s = out["synth"]
        typer.echo(f"synthesis: {s['queries']} queries, parse failures {s['parse_failures'] or 0}, "
                   f"{s['requests_sent']} requests sent, {s['from_store']} answers from the store")
    if "mine" in out:
        m = out["mine"]
        typer.echo(f"mining: {m['queries']} query-answer queries, {m['positive_first']} ranked their document first "
                   f"(skipped), {m['pairs']} preference pairs")
    if out.get("table"):
        typer.echo(f"\n{cfg.dataset} / {cfg.eval_split} (%)\n{out['table']}\nplot: {out['plot']}")
    if as_json:
        typer.echo(json_line({f"{r['row']}/{m}": r[m] for r in out["rows"] for m in cfg.eval_metrics}
                             | {"timings_s": out["timings_s"]}))


@app.command("demo")
def demo(
    storage_root: str = typer.Option("./runs", "--storage"),
    as_json: bool = JsonOpt,
) -> None:
    """The embedded default: SciFact test scores for BM25 and the bundled MiniLM encoder on local Ray."""
    from synthir.eval.report import format_table, json_line
    from synthir.eval.run import EvalConfig, run_eval

    _setup_logging()
    rows, out = [], {}
    for retriever in ("bm25", "dense"):
        res = run_eval(EvalConfig(retriever=retriever, storage=storage_root))
        rows.append({"retriever": res["model"], **res["metrics"], "wall_s": res["wall_s"]})
        out[retriever] = res["metrics"]
    metrics = list(out["bm25"])
    typer.echo("\nSciFact test (%)")
    typer.echo(format_table(rows, ["retriever", *metrics, "wall_s"], percent=metrics))
    if as_json:
        typer.echo(json_line({f"{r}/{m}": v for r, ms in out.items() for m, v in ms.items()}))


if __name__ == "__main__":
    app()
