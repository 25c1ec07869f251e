"""Benchmark add-on: are the SciFact differences of ``bench/syntriever_scifact.py`` more than noise over queries?

Seeds say how stable training is; they do not say whether another sample of test queries would agree. This takes
the models that benchmark trained (read from its cache under ``--storage``; run it first), scores each one per
test query (nDCG@10, pytrec_eval; the pipeline caches these per-query scores next to each model, so only the first
run encodes the 300 queries, the corpus embeddings being cached already), checks
that the per-query means reproduce the recorded aggregates, and compares rows with a paired sign-flip
randomization test and a bootstrap 95% interval over queries (per-query scores averaged over the seeds both rows
have). Writes ``bench/results/syntriever-paired.json`` and a section in ``docs/benchmarks.md``.
Run: python bench/syntriever_paired.py [--samples 10000] [--json]
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from syntriever_scifact import BASE, REFERENCE, STAGE2_ROWS, VARIANTS, Variant, machine, row_config, stage2_config, trained_rows  # noqa: E402

from synthir import storage  # noqa: E402
from synthir.eval.report import format_table, json_line, markdown_table  # noqa: E402
from synthir.manifest import git_commit  # noqa: E402
from synthir.pipelines.syntriever import SyntrieverPipeline  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METRIC = "ndcg@10"
#: (row, baseline) pairs to test
COMPARISONS = [("stage1", "gold_only"), ("stage1", "base"), ("gold_only", "base"), ("stage1_paper_loss", "gold_only"),
               ("stage1", "stage1_paper_loss"), ("stage1_pm_only", "stage1"), ("stage1_cot_only", "stage1"),
               ("stage2", "stage1"), ("stage2_bt", "stage1"), ("stage2", "stage2_bt"), ("stage2", "gold_only"),
               *[(v, b) for v in ("stage1_mined_base", "stage1_mined_bm25", "stage1_batch128", "stage1_batch256",
                                  "stage1_2epochs") for b in ("gold_only", "stage1")]]
#: comparisons summarised in the line `synthir run syntriever` prints about the full benchmark
FINDING = [("stage1", "gold_only"), ("stage2", "stage1"), ("stage2", "stage2_bt")]


def per_query_scores(row: str, spec: Variant | str | None, args: argparse.Namespace,
                     seed: int) -> dict[str, float]:
    """nDCG@10 of one trained row for every test query (``spec``: a stage-1 variant, a stage-2 loss's chosen
    stage-1 variant name, or None for the base model)."""
    if row in STAGE2_ROWS:
        pipe = SyntrieverPipeline(stage2_config(spec, STAGE2_ROWS[row], args, seed))
        model_dir = pipe.stage2_dir
    else:
        pipe = SyntrieverPipeline(row_config(row, spec or BASE, args, seed))
        model_dir = pipe.stage1_dir if spec else None
    if spec and not storage.exists(storage.join(model_dir, "_SUCCESS.json")):
        raise FileNotFoundError(f"{model_dir}: no trained model for row {row} seed {seed}; run bench/syntriever_scifact.py first")
    return {q: v[METRIC] for q, v in pipe.per_query(model_dir).items()}  # cached next to the model after the first call


def paired_test(diff: np.ndarray, samples: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Two-sided sign-flip randomization p-value of mean(diff) != 0, and a bootstrap 95% interval of the mean."""
    observed = abs(diff.mean())
    signs = rng.choice([-1.0, 1.0], size=(samples, diff.size))
    p = (1 + int((np.abs((signs * diff).mean(axis=1)) >= observed - 1e-12).sum())) / (1 + samples)
    boot = diff[rng.integers(0, diff.size, size=(samples, diff.size))].mean(axis=1)
    return p, float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def main() -> None:
    """Score every cached model per query, check the aggregates, run the paired tests, record them."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results", default=str(ROOT / "bench" / "results" / "syntriever-scifact.json"))
    ap.add_argument("--storage", default=None, help="the benchmark's --storage (default: the one recorded in --results)")
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    recorded = storage.read_json(args.results)
    settings = argparse.Namespace(**{**recorded["settings"], **({"storage": args.storage} if args.storage else {})})
    variants = {v: VARIANTS[v] for v in settings.variants.split(",")}
    specs = {"base": None, **trained_rows(variants, recorded["chosen_stage1"]),
             **{row: recorded["chosen_stage1"] for row in STAGE2_ROWS}}

    scores: dict[str, dict[int, dict[str, float]]] = {}
    recorded_seeds: dict[str, set[int]] = {}
    absent = []
    for r in recorded["rows"]:
        seed = r["seed"] if r["seed"] is not None else 0
        recorded_seeds.setdefault(r["row"], set()).add(seed)
        try:
            got = per_query_scores(r["row"], specs[r["row"]], settings, seed)
        except FileNotFoundError:  # trained on another machine: its comparisons are kept from the last run
            absent.append(f"{r['row']}/s{seed}")
            continue
        mean = sum(got.values()) / len(got)
        if abs(mean - r[METRIC]) > 1e-6:
            raise RuntimeError(f"{r['row']} seed {seed}: per-query mean {mean:.6f} != recorded {METRIC} {r[METRIC]:.6f}; "
                               f"the cache under {settings.storage} is not the recorded run's")
        scores.setdefault(r["row"], {})[seed] = got

    previous_uri = str(ROOT / "bench" / "results" / "syntriever-paired.json")
    previous = storage.read_json(previous_uri) if os.path.exists(previous_uri) else {"comparisons": []}
    kept_from = {r["comparison"]: {**r, "from": r.get("from") or previous.get("date")} for r in previous["comparisons"]}
    rng = np.random.default_rng(0)
    rows = []
    for a, b in COMPARISONS:
        if a not in recorded_seeds or b not in recorded_seeds:
            continue

        def seeds_of(row: str, other: str) -> list[int]:
            """Seeds to average: the base model has one; a stage-2 row against stage 1 is compared with the stage-1
            model it was trained from (seed 0), its own seeds all averaged; otherwise the seeds both rows have."""
            if row == "base" or (row == "stage1" and other in STAGE2_ROWS):
                return [0]
            if other == "base" or (row in STAGE2_ROWS and other not in STAGE2_ROWS):
                return sorted(recorded_seeds[row])
            return sorted(recorded_seeds[row] & recorded_seeds[other])

        seeds = {a: seeds_of(a, b), b: seeds_of(b, a)}
        if any(s not in scores.get(r, {}) for r in (a, b) for s in seeds[r]):  # a model this storage lacks
            if f"{a} - {b}" in kept_from:
                rows.append(kept_from[f"{a} - {b}"])
            continue
        qids = sorted(scores[a][seeds[a][0]])

        def mean_over(row: str) -> np.ndarray:
            runs = [scores[row][s] for s in seeds[row]]
            return np.array([np.mean([run[q] for run in runs]) for q in qids])

        diff = mean_over(a) - mean_over(b)
        p, lo, hi = paired_test(diff, args.samples, rng)
        rows.append({"comparison": f"{a} - {b}", "seeds": f"{len(seeds[a])} vs {len(seeds[b])}",
                     "mean_diff": round(100 * float(diff.mean()), 2), "ci95": f"[{100 * lo:.2f}, {100 * hi:.2f}]",
                     "p_value": round(p, 4), "queries_better": int((diff > 0).sum()), "queries_worse": int((diff < 0).sum()),
                     "queries_tied": int((diff == 0).sum()), "from": None})

    cols = ["comparison", "seeds", "mean_diff", "ci95", "p_value", "queries_better", "queries_worse", "queries_tied", "from"]
    if absent:
        print(f"models not under {settings.storage}: {', '.join(absent)}; their comparisons are the last run's ('from')")
    print(format_table(rows, cols))
    result = {"date": date.today().isoformat(), "machine": machine(), "commit": git_commit(), "metric": METRIC,
              "samples": args.samples, "source": os.path.relpath(args.results, ROOT), "comparisons": rows,
              "absent_models": absent}
    storage.write_json(str(ROOT / "bench" / "results" / "syntriever-paired.json"), result)
    if REFERENCE.exists():
        ref = storage.read_json(str(REFERENCE))
        found = {r["comparison"]: r for r in rows}
        ref["finding"] = "Paired tests over the test queries: " + "; ".join(
            f"{k} {found[k]['mean_diff']:+.2f} points (p {found[k]['p_value']:.2g})"
            for k in (f"{a} - {b}" for a, b in FINDING) if k in found) + " (docs/benchmarks.md)."
        storage.write_json(str(REFERENCE), ref)
    with open(ROOT / "docs" / "benchmarks.md", "a") as f:
        f.write(f"\n### Paired tests over SciFact test queries (`bench/syntriever_paired.py`) — {result['date']}, {result['machine']}, "
                f"commit {result['commit']}\n\nThe models of the runs above, scored per query ({METRIC}, 300 queries; "
                f"each row's per-query mean reproduces its recorded {METRIC}). mean_diff in points of {METRIC}, per-query "
                f"scores averaged over the seeds both rows have (a stage-2 row against stage1: its seeds against the seed-0 stage-1 model "
                f"it was trained from; seeds column: a vs b); p_value: two-sided paired sign-flip randomization test "
                f"({args.samples} samples); ci95: bootstrap over queries; from: the date of the run a comparison was kept from "
                f"(its models were trained on another machine), empty when computed now.\n\n{markdown_table(rows, cols)}\n")
    if args.json:
        print(json_line({r["comparison"]: {"mean_diff": r["mean_diff"], "p_value": r["p_value"]} for r in rows}))


if __name__ == "__main__":
    main()
