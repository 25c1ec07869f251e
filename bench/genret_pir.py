"""Benchmark: generative retrieval (Wen et al. 2025) on PIR AllSides and AGNews with the bundled SmolLM2 (issue 11).

For each ``--datasets`` entry: ``configs/genret-<dataset>-smollm2.yaml`` (all 500 documents, all 100 test queries,
the recorded teacher) is run end to end and gives the rows ``bm25``, ``dense_base`` (the bundled MiniLM),
``genret_sft`` and ``genret_rpo``, with identical texts collapsed (``dedup: true``); AGNews is also reported raw
(``dedup: false``: its 270 identical copies kept apart, the decoder trained on them too). ``--ablations`` run on
the first dataset: ``atomic_ids``, ``no_constrained`` (without constraints-based queries), ``concatenated``
(Context2ID then Query2ID instead of interleaved), each after SFT; ``--decode-speed`` decodes the test queries
with the SFT model with and without the trie (queries/s, same model and beams).

Every step is cached under ``--storage`` (rerun to continue). Writes ``bench/results/genret-pir.json`` (a list of
objects: dataset, system, hit@1, hit@5, hit@10, mrr@10, map@10, dedup, plus timings), a PNG plot beside it,
and a section in ``docs/benchmarks.md``.
Run: python bench/genret_pir.py [--datasets allsides,agnews] [--ablations atomic_ids,no_constrained,concatenated]
     [--decode-speed] [--baselines-only] [--set key=value ...] [--storage ./runs/bench-genret] [--json]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import date
from pathlib import Path

from synthir import storage
from synthir.config import load_config
from synthir.eval.report import bar_plot, format_table, json_line, markdown_table
from synthir.manifest import git_commit
from synthir.pipelines.genret import GenretConfig, GenretPipeline

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "genret-pir.json"
METRICS = ["hit@1", "hit@5", "hit@10", "mrr@10", "map@10"]
ABLATIONS = {
    "atomic_ids": ["ids.kind=atomic", "name={dataset}-atomic"],
    "no_constrained": ["sft_data.query_kinds=[queries,sentence]", "name={dataset}-no-constrained"],
    "concatenated": ["sft_data.mixing=concatenated", "name={dataset}-concatenated"],
}


def machine() -> str:
    """This machine, as the results and docs name it."""
    return f"{platform.machine()} {os.cpu_count()} cores, CPU"


def config_for(dataset: str, args, extra: list[str]) -> GenretConfig:
    """The dataset's CPU config with the benchmark's storage and overrides."""
    return load_config(GenretConfig, str(ROOT / "configs" / f"genret-{dataset}-smollm2.yaml"),
                       [f"storage={args.storage}", *args.set, *extra])


def row(dataset: str, system: str, dedup: bool, result: dict, **extra) -> dict:
    """One results object in the issue's schema, plus timings."""
    return {"dataset": dataset, "system": system, **{m: result[m] for m in METRICS}, "dedup": dedup,
            "wall_s": result.get("wall_s"), "queries_per_s": result.get("queries_per_s"), **extra}


def run_dataset(dataset: str, args, dedup: bool) -> tuple[list[dict], dict]:
    """The four main rows of one dataset (collapsed or raw); with ``--baselines-only`` only BM25 and the dense base."""
    extra = [] if dedup else ["corpus.collapse_identical=false", f"name={dataset}-raw"]
    pipeline = GenretPipeline(config_for(dataset, args, extra))
    out = pipeline.run(("eval",) if args.baselines_only else ("synth", "sft", "mine", "rpo", "eval"))
    rows = [row(dataset, r["row"], dedup, r, **({"train_s": out.get(r["row"][7:], {}).get("wall_s")}
                                                if r["row"].startswith("genret_") else {})) for r in out["rows"]]
    return rows, {"sft": out.get("sft"), "mine": out.get("mine"), "rpo": out.get("rpo"), "timings_s": out["timings_s"],
                  "documents": out["documents"], "test_queries": out["test_queries"]}


def run_ablation(dataset: str, name: str, args) -> dict:
    """One ablation row after SFT (no RPO, no baselines)."""
    extra = [o.format(dataset=dataset) for o in ABLATIONS[name]] + ["rpo=null", "baselines=[]"]
    out = GenretPipeline(config_for(dataset, args, extra)).run(("synth", "sft", "eval"))
    result = next(r for r in out["rows"] if r["row"] == "genret_sft")
    return row(dataset, name, True, result, train_s=out["sft"]["wall_s"])


def decode_speed(dataset: str, args) -> list[dict]:
    """Queries/s of the SFT model on the test queries, with and without the trie (same beams)."""
    from synthir.generative.retrieve import GenerativeRetriever

    pipeline = GenretPipeline(config_for(dataset, args, []))
    retriever = GenerativeRetriever(pipeline.model_dir("sft"))
    qids, texts = pipeline._queries()
    out = []
    for constrained in (True, False):
        decode = pipeline.config.decode.model_copy(update={"constrained": constrained})
        start = time.perf_counter()
        retriever.search(texts, decode)
        wall = time.perf_counter() - start
        out.append({"dataset": dataset, "constrained": constrained, "queries": len(qids), "wall_s": round(wall, 2),
                    "queries_per_s": round(len(qids) / wall, 3), "num_beams": decode.num_beams})
    return out


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    """Old rows replaced by new ones with the same (dataset, system, dedup)."""
    keys = {(r["dataset"], r["system"], r["dedup"]) for r in new}
    return [r for r in old if (r["dataset"], r["system"], r["dedup"]) not in keys] + new


def main() -> None:
    """Run the benchmark and record its results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="allsides,agnews")
    ap.add_argument("--ablations", default="", help=f"comma-separated: {','.join(ABLATIONS)}")
    ap.add_argument("--decode-speed", action="store_true")
    ap.add_argument("--baselines-only", action="store_true", help="only the bm25 and dense_base rows (minutes, no training)")
    ap.add_argument("--set", action="append", default=[], help="config override for every run, e.g. mining.queries=100")
    ap.add_argument("--storage", default=str(ROOT / "runs" / "bench-genret"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    datasets = [d for d in args.datasets.split(",") if d]
    rows, details, speed = [], {}, []
    for dataset in datasets:
        for dedup in ((True, False) if dataset == "agnews" else (True,)):
            new, detail = run_dataset(dataset, args, dedup)
            rows += new
            details[f"{dataset}{'' if dedup else '-raw'}"] = detail
    for name in [a for a in args.ablations.split(",") if a]:
        rows.append(run_ablation(datasets[0], name, args))
    if args.decode_speed:
        speed = decode_speed(datasets[0], args)
    recorded = storage.read_json(str(RESULTS)) if RESULTS.exists() else {"rows": []}
    result = {"rows": merge(recorded["rows"], rows), "decode_speed": speed or recorded.get("decode_speed", []),
              "runs": {**recorded.get("runs", {}), **details}, "machine": machine(), "date": str(date.today()),
              "commit": git_commit(), "overrides": args.set}
    storage.write_json(str(RESULTS), result)
    labelled = [{**r, "label": f"{r['dataset']}/{r['system']}{'' if r['dedup'] else ' (raw)'}"} for r in result["rows"]]
    bar_plot(labelled, "label", METRICS[:4], str(RESULTS.with_suffix(".png")), title="PIR test, SmolLM2-135M on CPU")
    table = format_table(labelled, ["label", *METRICS, "queries_per_s", "wall_s"], percent=METRICS)
    print(table)
    md = (f"\n## Generative retrieval on PIR ({date.today()}, {machine()}, commit {git_commit()})\n\n"
          f"`python bench/genret_pir.py --datasets {args.datasets}"
          + (f" --ablations {args.ablations}" if args.ablations else "") + (" --decode-speed" if args.decode_speed else "")
          + (" --baselines-only" if args.baselines_only else "")
          + "".join(f" --set {s}" for s in args.set) + "`\n\n"
          + markdown_table(labelled, ["label", *METRICS, "queries_per_s", "wall_s"], percent=METRICS) + "\n")
    if speed:
        md += "\n" + markdown_table(speed, ["dataset", "constrained", "queries", "num_beams", "queries_per_s", "wall_s"]) + "\n"
    with open(ROOT / "docs" / "benchmarks.md", "a") as f:
        f.write(md)
    if args.json:
        print(json_line({f"{r['dataset']}/{r['system']}/{'dedup' if r['dedup'] else 'raw'}/hit@1": r["hit@1"]
                         for r in rows}))


if __name__ == "__main__":
    main()
