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
import platform
import sys
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from syntriever_scifact import VARIANTS, row_config, trained_rows  # noqa: E402

from synthir import storage  # noqa: E402
from synthir.eval.report import format_table, json_line, markdown_table  # noqa: E402
from synthir.manifest import git_commit  # noqa: E402
from synthir.pipelines.syntriever import SyntrieverPipeline  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METRIC = "ndcg@10"
#: (row, baseline) pairs to test
COMPARISONS = [("stage1", "gold_only"), ("stage1", "base"), ("gold_only", "base"), ("stage1_paper_loss", "gold_only"),
               ("stage1", "stage1_paper_loss"), ("stage1_pm_only", "stage1"), ("stage1_cot_only", "stage1")]


def per_query_scores(row: str, spec: tuple[str, str, int] | None, args: argparse.Namespace, seed: int) -> dict[str, float]:
    """nDCG@10 of one trained row (or the base model when ``spec`` is None) for every test query."""
    pipe = SyntrieverPipeline(row_config(row, spec or ("full", "paper", 0), args, seed))
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
    specs = {"base": None, **trained_rows(variants, recorded["chosen_stage1"])}

    scores: dict[str, dict[int, dict[str, float]]] = {}
    for r in recorded["rows"]:
        seed = r["seed"] if r["seed"] is not None else 0
        got = per_query_scores(r["row"], specs[r["row"]], settings, seed)
        mean = sum(got.values()) / len(got)
        if abs(mean - r[METRIC]) > 1e-6:
            raise RuntimeError(f"{r['row']} seed {seed}: per-query mean {mean:.6f} != recorded {METRIC} {r[METRIC]:.6f}; "
                               f"the cache under {settings.storage} is not the recorded run's")
        scores.setdefault(r["row"], {})[seed] = got

    rng = np.random.default_rng(0)
    rows = []
    for a, b in COMPARISONS:
        trained = [set(scores[r]) for r in (a, b) if r != "base"]  # the base model has no seed
        seeds = sorted(set.intersection(*trained))
        qids = sorted(scores[a][seeds[0]])

        def mean_over(row: str) -> np.ndarray:
            runs = [scores[row][s] for s in seeds] if row != "base" else [scores["base"][0]]
            return np.array([np.mean([run[q] for run in runs]) for q in qids])

        diff = mean_over(a) - mean_over(b)
        p, lo, hi = paired_test(diff, args.samples, rng)
        rows.append({"comparison": f"{a} - {b}", "seeds": len(seeds),
                     "mean_diff": round(100 * float(diff.mean()), 2), "ci95": f"[{100 * lo:.2f}, {100 * hi:.2f}]",
                     "p_value": round(p, 4), "queries_better": int((diff > 0).sum()), "queries_worse": int((diff < 0).sum()),
                     "queries_tied": int((diff == 0).sum())})

    cols = ["comparison", "seeds", "mean_diff", "ci95", "p_value", "queries_better", "queries_worse", "queries_tied"]
    print(format_table(rows, cols))
    machine = f"{platform.machine()} {os.cpu_count()} cores, CPU"
    result = {"date": date.today().isoformat(), "machine": machine, "commit": git_commit(), "metric": METRIC,
              "samples": args.samples, "source": os.path.relpath(args.results, ROOT), "comparisons": rows}
    storage.write_json(str(ROOT / "bench" / "results" / "syntriever-paired.json"), result)
    with open(ROOT / "docs" / "benchmarks.md", "a") as f:
        f.write(f"\n### Paired tests over SciFact test queries (`bench/syntriever_paired.py`) — {result['date']}, {machine}, "
                f"commit {result['commit']}\n\nThe models of the 3-seed run above, scored per query ({METRIC}, 300 queries; "
                f"each row's per-query mean reproduces its recorded {METRIC}). mean_diff in points of {METRIC}, per-query "
                f"scores averaged over the seeds both rows have; p_value: two-sided paired sign-flip randomization test "
                f"({args.samples} samples); ci95: bootstrap over queries.\n\n{markdown_table(rows, cols)}\n")
    if args.json:
        print(json_line({r["comparison"]: {"mean_diff": r["mean_diff"], "p_value": r["p_value"]} for r in rows}))


if __name__ == "__main__":
    main()
