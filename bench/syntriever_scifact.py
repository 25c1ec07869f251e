"""Benchmark: the Syntriever recipe on SciFact with the bundled MiniLM and the recorded teacher (issue 4).

Two phases, one command:

1. ``select``: the stage-1 loss variants are trained on 80% of the SciFact TRAINING queries and scored on the other
   20% (a held-out part of train; SciFact has no dev split; corpus = their relevant documents + 1,000 random
   ones). The best nDCG@10 becomes the ``stage1`` row. The test split is never looked at here.
2. ``test``: every row trained on all 809 training queries and evaluated once on the SciFact test split, full
   corpus: ``base``, ``gold_only`` (in-batch InfoNCE, same steps and batch), ``stage1`` (the chosen variant),
   ``stage1_paper_loss``, ``stage1_cot_only`` / ``stage1_pm_only`` (the paper's ablation, with the chosen loss),
   and one row per other variant.
3. ``stage2``: ``stage2`` (partial Plackett-Luce) and ``stage2_bt`` (Bradley-Terry), each trained from the chosen
   stage-1 model of seed 0 (the model whose top-5 the recorded judge answered) with the recorded judge, the paper's
   N = 10 pairs per query and batch 100, once per ``--stage2-seeds`` seed (the stage-2 shuffle and init of its
   training). ``--stage2-only`` runs just this phase and merges its rows into the recorded results.

``--add-variants`` trains only the named stage-1 variants (held-out selection row, then test rows for ``--seeds``)
and merges them into the recorded results, with the held-out choice among every variant recorded.

Every step is cached under ``--storage`` (rerun to continue). Writes ``bench/results/syntriever-scifact.json``
(one object per row: row, ndcg@1/3/5/10, train_s, examples_per_s, seed), a PNG plot beside it, and a section
in ``docs/benchmarks.md``.
Run: python bench/syntriever_scifact.py [--seeds 0,1,2] [--seed-rows gold_only,stage1] [--stage2-seeds 0,1,2]
     [--stage2-only] [--add-variants stage1_mined_bm25,...] [--epochs 1] [--storage ./runs/bench] [--json]
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import random
import statistics
import time
from datetime import date
from pathlib import Path
from typing import NamedTuple

from synthir import storage
from synthir.data.beir import bundled_root
from synthir.dense.train import TrainConfig
from synthir.eval.report import bar_plot, format_table, json_line, markdown_table
from synthir.manifest import git_commit
from synthir.pipelines.syntriever import NDCG, Stage1Options, SubsampleConfig, SyntrieverConfig, SyntrieverPipeline
from synthir.runtime import RayConfig
from synthir.synth.answer import MissingAnswers
from synthir.synth.preferences import PreferenceConfig

ROOT = Path(__file__).resolve().parents[1]


class Variant(NamedTuple):
    """A stage-1 row's data and training settings (None: the benchmark's ``--batch-size`` / ``--epochs``)."""

    columns: str
    mode: str
    mined: int = 0
    mined_by: str = "base"
    batch_size: int | None = None
    mini_batch: int | None = None
    epochs: float | None = None


#: stage-1 variants
VARIANTS = {
    "stage1_paper_loss": Variant("full", "paper"),
    "stage1_per_positive": Variant("full", "per_positive"),
    "stage1_gold_plus_synthetic": Variant("full", "gold_plus_synthetic"),
    "stage1_per_positive_mined": Variant("full", "per_positive", 3),
    # issue 12, on the default loss: corpus-mined hard negatives, a larger batch with GradCache, a second epoch
    "stage1_mined_base": Variant("full", "gold_plus_synthetic", 3, "base"),
    "stage1_mined_bm25": Variant("full", "gold_plus_synthetic", 3, "bm25"),
    "stage1_batch128": Variant("full", "gold_plus_synthetic", batch_size=128, mini_batch=32),
    "stage1_batch256": Variant("full", "gold_plus_synthetic", batch_size=256, mini_batch=32),
    "stage1_2epochs": Variant("full", "gold_plus_synthetic", epochs=2.0),
}
GOLD_ONLY = Variant("gold_only", "paper")
BASE = Variant("full", "paper")
#: stage-2 rows: their loss
STAGE2_ROWS = {"stage2": "pl", "stage2_bt": "bt"}
RESULTS = ROOT / "bench" / "results" / "syntriever-scifact.json"
#: what `synthir run syntriever` prints about the full benchmark after a (subsampled) SciFact run
REFERENCE = ROOT / "platform" / "synthir" / "_data" / "scifact" / "benchmark.json"
REFERENCE_ROWS = ("base", "gold_only", "stage1", "stage2", "stage2_bt")


def heldout_dataset(root: str, fraction: float = 0.2, seed: int = 0) -> str:
    """SciFact with its train qrels split into ``fit`` and ``heldout`` (by query), written once under ``root``."""
    out = storage.join(root, "scifact-heldout")
    if storage.exists(storage.join(out, "qrels", "heldout.tsv")):
        return out
    src = bundled_root("scifact")
    for name in ("corpus.jsonl.gz", "queries.jsonl.gz"):
        storage.write_bytes(storage.join(out, name), storage.read_bytes(storage.join(src, name)))
    lines = storage.read_text(storage.join(src, "qrels", "train.tsv")).splitlines()
    header, rows = lines[0], [ln for ln in lines[1:] if ln.strip()]
    qids = sorted({ln.split("\t")[0] for ln in rows})
    held = set(random.Random(seed).sample(qids, int(len(qids) * fraction)))
    for split, keep in (("fit", lambda q: q not in held), ("heldout", lambda q: q in held)):
        body = "\n".join([header, *[ln for ln in rows if keep(ln.split("\t")[0])]]) + "\n"
        storage.write_text(storage.join(out, "qrels", f"{split}.tsv"), body)
    return out


def machine() -> str:
    """This machine, as the results and docs name it."""
    return f"{platform.machine()} {os.cpu_count()} cores, CPU"


def result_row(name: str, r: dict, seed: int) -> dict:
    """A results row from one run's metrics: nDCG, train time and throughput, seed."""
    return {"row": name, **{m: r[m] for m in NDCG}, "train_s": r.get("train_s"),
            "examples_per_s": r.get("examples_per_s"), "seed": seed}


def row_config(row: str, variant: Variant, args, seed: int, **data) -> SyntrieverConfig:
    """The pipeline config of one stage-1 benchmark row (stage 2 off)."""
    loss = "infonce" if variant.columns == "gold_only" else "distill"
    train = TrainConfig(loss=loss, distill_mode=variant.mode, epochs=variant.epochs or args.epochs,
                        batch_size=variant.batch_size or args.batch_size, mini_batch_size=variant.mini_batch, lr=args.lr,
                        max_seq_length=args.max_seq_length, seed=seed, cpus_per_worker=args.cpus,
                        torch_threads=args.cpus, num_workers=args.workers)
    stage1 = Stage1Options(columns=variant.columns, mined_negatives=variant.mined, mined_by=variant.mined_by, train=train)
    return SyntrieverConfig(name=f"{row}-s{seed}", storage=args.storage, stage1=stage1, stage2=None,
                            ray=RayConfig(num_cpus=os.cpu_count()), **data)


def trained_rows(variants: dict[str, Variant], chosen: str) -> dict[str, Variant]:
    """The trained test rows: gold-only, the chosen stage 1, its q_cot-only / p±-only ablations, the other variants."""
    spec = variants[chosen]
    return {"gold_only": GOLD_ONLY, "stage1": spec, "stage1_cot_only": spec._replace(columns="cot_only"),
            "stage1_pm_only": spec._replace(columns="pm_only"), **{v: s for v, s in variants.items() if v != chosen}}


def run_row(cfg: SyntrieverConfig, base_only: bool = False) -> dict:
    """Train (unless base) and evaluate one row; returns its metrics, train_s and examples_per_s."""
    pipe = SyntrieverPipeline(cfg)
    out = pipe.run(("eval",) if base_only else ("synth", "stage1", "eval"))
    return out["rows"][0] if base_only else out["rows"][-1]


def stage2_config(chosen: str, loss: str, args, seed: int) -> SyntrieverConfig:
    """A stage-2 row: the recorded judge on the chosen stage-1 model of seed 0, trained with ``loss`` and ``seed``."""
    cfg = row_config("stage1", VARIANTS[chosen], args, 0)
    train = cfg.stage1.train.model_copy(update={"loss": loss, "batch_size": 100, "seed": seed})
    return cfg.model_copy(update={"preferences": PreferenceConfig(), "stage2": train})


def run_stage2_row(cfg: SyntrieverConfig) -> tuple[dict, dict]:
    """Mine, judge (recorded), train and evaluate one stage-2 row; returns its metrics and the judge summary."""
    out = SyntrieverPipeline(cfg).run(("synth", "stage1", "mine", "preferences", "stage2", "eval"))
    prefs = out["preferences"]
    judge = {k: prefs[k] for k in ("pairs", "requests", "triples", "coverage", "judged_by", "unanswered_pairs",
                                   "parse_failures", "swap_disagreements", "passage1_rate", "requests_sent", "gold_agreement")}
    return out["rows"][-1], judge


def stage2_phase(chosen: str, args, seeds: list[int], on_row=None) -> tuple[list[dict], dict]:
    """Every stage-2 row for every seed (``on_row(rows, judge)`` after each); returns the rows and the judge summary."""
    rows, judge = [], {}
    for seed in seeds:
        for name, loss in STAGE2_ROWS.items():
            r, judge = run_stage2_row(stage2_config(chosen, loss, args, seed))
            rows.append({**result_row(name, r, seed), "init": f"{chosen} seed 0"})
            print(format_table(rows[-1:], ["row", *NDCG, "train_s", "examples_per_s", "seed"], percent=NDCG), flush=True)
            if on_row:
                on_row(rows, judge)
    return rows, judge


def judge_markdown(judge: dict) -> str:
    """The recorded judge's coverage and agreement as a sentence for docs/benchmarks.md."""
    g = judge["gold_agreement"]
    return (f"Judge (recorded teacher, `preferences.engine: recorded`): {judge['pairs']} pairs of the stage-1 top-5 "
            f"({judge['requests']} requests with both orders), coverage {judge['coverage']:.2%} "
            f"(judged_by {judge['judged_by']}), {judge['requests_sent']} requests sent, {judge['triples']} triples; "
            f"parse failures {judge['parse_failures']}, ties 0 (the prompt offers none), order disagreements "
            f"{judge['swap_disagreements']}; it picks Passage #1 in {judge['passage1_rate']:.1%} of answers; on the "
            f"{g['pairs_with_one_gold']} pairs with exactly one gold document it prefers the gold one "
            f"{g['prefers_gold']} times ({g['agreement']:.1%}).")


def export_compare_requests(cfg: SyntrieverConfig, out: Path) -> str:
    """Export, as an OpenAI Batch file at ``out``, the P_compare requests of a stage-1 model's top-5 the store lacks.

    The recorded answers (``synthir/_data/scifact/teacher/compare-*``) cover the seed-0 default; a different
    stage-1 model mines other candidates, and this writes what a judge must still be asked (``<out>.meta.json``
    names the model).
    """
    judge = PreferenceConfig(engine="batch", model="recorded-teacher", pairs=None)
    pipe = SyntrieverPipeline(cfg.model_copy(update={"preferences": judge, "stage2": TrainConfig(loss="pl", batch_size=100)}))
    try:
        pipe.run(("mine", "preferences"))
    except MissingAnswers as e:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(gzip.compress(storage.read_bytes(e.uri), mtime=0))
        storage.write_bytes(str(out) + ".meta.json", storage.read_bytes(e.uri + ".meta.json"))
        return str(out)
    raise RuntimeError("every comparison already has an answer in the store; nothing to export")


def mean_over_seeds(rows: list[dict]) -> list[dict]:
    """One row per benchmark row: nDCG means over its seeds, the sd of nDCG@10 and the number of seeds."""
    out = []
    for name in dict.fromkeys(r["row"] for r in rows):
        runs = [r for r in rows if r["row"] == name]
        sd = statistics.stdev(r["ndcg@10"] for r in runs) if len(runs) > 1 else None
        out.append({"row": name, **{m: statistics.mean(r[m] for r in runs) for m in NDCG}, "ndcg@10_sd": sd, "seeds": len(runs)})
    return out


def means_markdown(means: list[dict]) -> str:
    """The mean-over-seeds table (``mean_over_seeds`` rows) as markdown."""
    return markdown_table(means, ["row", *NDCG, "ndcg@10_sd", "seeds"], percent=[*NDCG, "ndcg@10_sd"])


def append_benchmarks(section: str) -> None:
    """Append a section to docs/benchmarks.md."""
    with open(ROOT / "docs" / "benchmarks.md", "a") as f:
        f.write(section)


def write_results(result: dict) -> None:
    """Write the results JSON and its plot (mean over seeds per row)."""
    storage.write_json(str(RESULTS), result)
    bar_plot(result["mean_over_seeds"], "row", NDCG, str(RESULTS.with_suffix(".png")),
             title="SciFact test, MiniLM + recorded teacher (stage 1 and 2)")
    old = storage.read_json(str(REFERENCE)) if REFERENCE.exists() else {}
    runs = [result, *result.get("stage2_settings", []), *result.get("variant_settings", [])]
    storage.write_json(str(REFERENCE), {
        "source": "bench/syntriever_scifact.py", "split": "test", "queries": 300, "machine": result["machine"],
        "date": runs[-1]["date"] if len(runs) > 1 else result["date"],
        "commit": runs[-1]["commit"] if len(runs) > 1 else result["commit"],
        "rows": [{"row": r["row"], "ndcg@10": r["ndcg@10"], "seeds": r["seeds"]}
                 for r in result["mean_over_seeds"] if r["row"] in REFERENCE_ROWS],
        "finding": old.get("finding", "")})


def stage2_main(args, seeds: list[int]) -> None:
    """Run the stage-2 rows from the recorded results' chosen stage 1; merge them in after every row."""
    result = storage.read_json(str(RESULTS))
    settings = argparse.Namespace(**{**result["settings"], "storage": args.storage})
    recorded = result["rows"]
    earlier = result.get("stage2_settings", [])
    start = time.perf_counter()

    def merge(new_rows: list[dict], judge: dict) -> None:
        """Replace exactly the (row, seed) pairs trained so far; every other recorded row stays, even if a later one
        of this run is never trained."""
        done = {(r["row"], r["seed"]) for r in new_rows}
        rows = [r for r in recorded if (r["row"], r["seed"]) not in done] + new_rows
        this_run = {"seeds": seeds, "commit": git_commit(), "date": date.today().isoformat(),
                    "wall_s": round(time.perf_counter() - start, 1)}
        result.update(rows=rows, mean_over_seeds=mean_over_seeds(rows), stage2_judge=judge,
                      stage2_settings=[*earlier, this_run])
        write_results(result)

    s2_rows, judge = stage2_phase(result["chosen_stage1"], settings, seeds, on_row=merge)
    cols = ["row", *NDCG, "train_s", "examples_per_s", "seed"]
    means = [r for r in result["mean_over_seeds"] if r["row"] in ("base", "gold_only", "stage1", *STAGE2_ROWS)]
    print(format_table(means, ["row", *NDCG, "ndcg@10_sd", "seeds"], percent=NDCG))
    md = (f"\n### Syntriever stage 2 on SciFact test (MiniLM, recorded judge) — {date.today().isoformat()}, {machine()}, "
          f"commit {git_commit()}\n\n`python bench/syntriever_scifact.py --stage2-only --stage2-seeds "
          f"{','.join(map(str, seeds))}`: from the `{result['chosen_stage1']}` stage-1 model of seed 0, 1 epoch, "
          f"batch 100, lr {settings.lr}, N = 10 pairs per query (all pairs of the top-5), train max_seq_length "
          f"{settings.max_seq_length}; the seed is stage 2's own.\n\n{markdown_table(s2_rows, cols, percent=NDCG)}\n\n"
          f"Mean over seeds (every recorded seed; stage-1 rows from the run above):\n\n"
          f"{means_markdown(means)}\n\n"
          f"{judge_markdown(judge)}\n")
    append_benchmarks(md)
    if args.json:
        print(json_line({f"{r['row']}/s{r['seed']}/ndcg@10": r["ndcg@10"] for r in s2_rows} | {"coverage": judge["coverage"]}))


def variants_main(args, names: list[str], seeds: list[int]) -> None:
    """Add stage-1 variants to the recorded results: held-out selection row, then test rows; merged after every row."""
    result = storage.read_json(str(RESULTS))
    chosen = result["chosen_stage1"]
    bad = [n for n in names if n != "gold_only" and (n not in VARIANTS or n == chosen)]
    if bad:
        raise SystemExit(f"--add-variants: {bad} are not other stage-1 variants (known: {sorted(VARIANTS)}; "
                         f"{chosen} is the recorded stage1 row)")
    settings = argparse.Namespace(**{**result["settings"], "storage": args.storage})
    known = result["settings"]["variants"].split(",")
    result["settings"]["variants"] = ",".join(known + [n for n in names if n not in known and n != "gold_only"])
    specs = {n: GOLD_ONLY if n == "gold_only" else VARIANTS[n] for n in names}
    this_run = {"variants": names, "seeds": seeds, "commit": git_commit(), "date": date.today().isoformat(),
                "machine": machine(), "wall_s": 0.0}
    result["variant_settings"] = [*result.get("variant_settings", []), this_run]
    start = time.perf_counter()

    def merge(key: str, row: dict, same) -> dict:
        """Put ``row`` in place of the recorded row it repeats (kept under ``recorded``), or at the end; returns it."""
        at = next((i for i, r in enumerate(result[key]) if same(r)), None)
        if at is None:
            result[key].append(row)
        else:
            old = result[key][at]
            row = {**row, "recorded": old.get("recorded") or {k: v for k, v in old.items() if k != "recorded"}}
            result[key][at] = row
        result["mean_over_seeds"] = mean_over_seeds(result["rows"])
        this_run["wall_s"] = round(time.perf_counter() - start, 1)
        write_results(result)
        return row

    held = heldout_dataset(args.storage)
    data = {"dataset": held, "train_split": "fit", "eval_split": "heldout",
            "subsample": SubsampleConfig(corpus_distractors=1000, seed=0)}
    for name, spec in specs.items():
        if name == "gold_only":  # its held-out row is recorded; only the test row is retrained (a model this storage lacks)
            continue
        r = {**run_row(row_config(f"select-{name}", spec, settings, 0, **data)), "row": name}
        merge("selection_heldout_train", r, lambda x, n=name: x["row"] == n)
        print(format_table([r], ["row", *NDCG], percent=NDCG), flush=True)
    tested = []
    for seed in seeds:
        for name, spec in specs.items():
            row = result_row(name, run_row(row_config(name, spec, settings, seed)), seed)
            stored = merge("rows", row, lambda x, n=name, s=seed: x["row"] == n and x["seed"] == s)
            if "recorded" in stored:
                row["recorded_ndcg@10"] = stored["recorded"]["ndcg@10"]
            tested.append(row)
            print(format_table([row], ["row", *NDCG, "train_s", "seed"], percent=NDCG), flush=True)
    variants = result["settings"]["variants"].split(",")
    held_best = max((r for r in result["selection_heldout_train"] if r["row"] in variants), key=lambda r: r["ndcg@10"])
    result["heldout_choice_with_new_variants"] = held_best["row"]
    write_results(result)
    described = "; ".join(f"`{n}`: " + ", ".join(f"{k} {v}" for k, v in spec._asdict().items()
                                                  if k in ("columns", "mode") or v != Variant._field_defaults[k])
                          for n, spec in specs.items())
    cols = ["row", *NDCG, "train_s", "seed", "recorded_ndcg@10"]
    md = (f"\n### Syntriever stage-1 variants on SciFact (MiniLM, recorded teacher) — {this_run['date']}, {this_run['machine']}, "
          f"commit {this_run['commit']}\n\n`python bench/syntriever_scifact.py --add-variants {','.join(names)} "
          f"--seeds {','.join(map(str, seeds))}` ({described}; every other setting as in the stage-1 run above; "
          f"mined negatives exclude gold; batch sizes are groups per step, with GradCache mini-batches).\n\n"
          f"Held-out TRAINING queries (the selection; rows of earlier runs are the recorded ones):\n\n"
          f"{markdown_table(sorted(result['selection_heldout_train'], key=lambda r: -r['ndcg@10']), ['row', *NDCG], percent=NDCG)}"
          f"\n\nHeld-out choice among all variants: **{held_best['row']}**.\n\nTest (full corpus, 300 queries; "
          f"`recorded_ndcg@10`: the row as first recorded, where it was retrained):\n\n"
          f"{markdown_table(tested, cols, percent=[*NDCG, 'recorded_ndcg@10'])}\n")
    append_benchmarks(md)
    if args.json:
        print(json_line({f"{r['row']}/s{r['seed']}/ndcg@10": r["ndcg@10"] for r in tested}
                        | {"heldout_choice": held_best["row"]}))


def main() -> None:
    """Select the stage-1 default on held-out training queries, then score every row on test once."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--storage", default=str(ROOT / "runs" / "bench"))
    ap.add_argument("--seeds", default="0", help="comma-separated training seeds")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--max-seq-length", type=int, default=128, help="training-time truncation (eval uses 256)")
    ap.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs per Ray Train worker")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="stage-1 variants to select among")
    ap.add_argument("--seed-rows", default="", help="comma-separated rows that get the seeds after the first (default: all)")
    ap.add_argument("--stage2-seeds", default="0,1,2", help="comma-separated stage-2 training seeds ('' for none)")
    ap.add_argument("--stage2-only", action="store_true", help="only the stage-2 rows, merged into the recorded results")
    ap.add_argument("--add-variants", metavar="NAMES", help="only train these stage-1 variants (and gold_only if named) "
                                                            "on held-out train and test for --seeds, merged into the recorded results")
    ap.add_argument("--export-only", metavar="VARIANT", help="only export the comparison requests the store lacks for "
                                                             "this stage-1 variant (seed 0) to runs/compare-requests.jsonl.gz")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.export_only:
        print(export_compare_requests(row_config("stage1", VARIANTS[args.export_only], args, 0),
                                      ROOT / "runs" / "compare-requests.jsonl.gz"))
        return
    stage2_seeds = [int(s) for s in args.stage2_seeds.split(",") if s.strip()]
    if args.add_variants:
        variants_main(args, args.add_variants.split(","), [int(s) for s in args.seeds.split(",")])
        return
    if args.stage2_only:
        stage2_main(args, stage2_seeds)
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = {v: VARIANTS[v] for v in args.variants.split(",")}
    start = time.perf_counter()

    # phase 1: choose the stage-1 variant on held-out training queries (seed of the first run only)
    held = heldout_dataset(args.storage)
    sub = SubsampleConfig(corpus_distractors=1000, seed=0)
    data = {"dataset": held, "train_split": "fit", "eval_split": "heldout", "subsample": sub}
    selection = [{**run_row(row_config("select-base", BASE, args, 0, **data), base_only=True), "row": "base"}]
    for name, variant in {"gold_only": GOLD_ONLY, **variants}.items():
        cfg = row_config(f"select-{name}", variant, args, seeds[0], **data)
        selection.append({**run_row(cfg), "row": name})
        print(format_table(selection[-1:], ["row", *NDCG], percent=NDCG), flush=True)
    chosen = max((r for r in selection if r["row"] in variants), key=lambda r: r["ndcg@10"])["row"]

    # phase 2: every row on the test split, full corpus
    rows_spec = trained_rows(variants, chosen)
    base = run_row(row_config("base", BASE, args, 0), base_only=True)
    rows = [{"row": "base", **{m: base[m] for m in NDCG}, "train_s": 0.0, "examples_per_s": None, "seed": None}]
    seed_rows = set(filter(None, args.seed_rows.split(",")))
    for seed in seeds:
        for name, variant in rows_spec.items():
            if seed != seeds[0] and seed_rows and name not in seed_rows:
                continue
            r = run_row(row_config(name, variant, args, seed))
            rows.append(result_row(name, r, seed))
            print(format_table(rows[-1:], ["row", *NDCG, "train_s", "examples_per_s", "seed"], percent=NDCG), flush=True)

    s2_rows, judge = stage2_phase(chosen, args, stage2_seeds)
    rows += s2_rows
    result = {"date": date.today().isoformat(), "machine": machine(),
              "commit": git_commit(), "settings": vars(args), "chosen_stage1": chosen,
              "selection_heldout_train": selection, "rows": rows, "mean_over_seeds": mean_over_seeds(rows),
              "stage2_judge": judge, "wall_s": round(time.perf_counter() - start, 1)}
    write_results(result)
    cols = ["row", *NDCG, "train_s", "examples_per_s", "seed"]
    print(format_table(rows, cols, percent=NDCG))
    md = (f"\n### Syntriever stage 1 on SciFact test (MiniLM, recorded teacher) — {result['date']}, {result['machine']}, "
          f"commit {result['commit']}\n\n`python bench/syntriever_scifact.py --seeds {args.seeds} "
          f"--seed-rows {args.seed_rows or 'all'} --epochs {args.epochs}` "
          f"(batch {args.batch_size} groups, lr {args.lr}, train max_seq_length {args.max_seq_length}, "
          f"{args.workers} Ray Train worker(s)); default chosen on held-out TRAINING queries: **{chosen}**.\n\n"
          f"Held-out selection (20% of train queries, corpus = their relevant docs + 1,000 random):\n\n"
          f"{markdown_table(selection, ['row', *NDCG], percent=NDCG)}\n\nTest (full corpus, 300 queries):\n\n"
          f"{markdown_table(rows, cols, percent=NDCG)}\n\n"
          f"Mean over seeds (sd of nDCG@10 where a row has several):\n\n"
          f"{means_markdown(result['mean_over_seeds'])}"
          f"\n\n{judge_markdown(judge) if judge else ''}\n\n![](../bench/results/syntriever-scifact.png)\n")
    append_benchmarks(md)
    if args.json:
        print(json_line({f"{r['row']}/s{r['seed']}/ndcg@10": r["ndcg@10"] for r in rows} | {"chosen_stage1": chosen}))


if __name__ == "__main__":
    main()
