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

SetOpt = typer.Option(None, "--set", help="override a config key: --set encoder.batch_size=32 (repeatable)")
JsonOpt = typer.Option(False, "--json", help="print one JSON object as the last line of stdout")
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config (path or URI)")


def _fail(err: Exception) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


@app.command("eval")
def eval_cmd(
    dataset: Optional[str] = typer.Option(None, help="bundled name (scifact, pir/allsides) or a BEIR folder path/URI"),
    retriever: Optional[str] = typer.Option(None, help="bm25 or dense"),
    model: Optional[str] = typer.Option(None, help="encoder: local path, s3:// URI or name (dense only)"),
    split: Optional[str] = typer.Option(None, help="qrels split (default test)"),
    storage_root: Optional[str] = typer.Option(None, "--storage", help="run output root: path or s3:// URI (default ./runs)"),
    config: Optional[str] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Evaluate BM25 or a dense encoder on a dataset split: nDCG@1/3/5/10 and Recall@100."""
    from synthir.config import ConfigError, load_config
    from synthir.data.beir import DataError
    from synthir.eval.report import format_table, json_line
    from synthir.eval.run import EvalConfig, run_eval
    from synthir.storage import StorageError

    _setup_logging()
    overrides = list(set_ or [])
    for key, value in (("dataset", dataset), ("retriever", retriever), ("encoder.model", model), ("split", split), ("storage", storage_root)):
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
