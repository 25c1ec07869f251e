"""Benchmark: SciFact test scores of BM25 and the bundled all-MiniLM-L6-v2 on local Ray, full corpus.

Targets (issue 2): dense nDCG@10 64.5 ± 0.3 (MTEB publishes 64.51); BM25 66-68 (Anserini 66.5 / 67.9).
Writes bench/results/eval-scifact.json and appends a row per retriever to docs/benchmarks.md.
Run: python bench/eval_scifact.py [--storage DIR] [--json]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from datetime import date
from pathlib import Path

from synthir import storage
from synthir.eval.report import format_table, json_line, markdown_table
from synthir.eval.run import EvalConfig, run_eval
from synthir.manifest import git_commit

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "recall@100"]


def machine() -> str:
    """A short description of this machine."""
    import os

    return f"{platform.machine()} {os.cpu_count()} cores, CPU"


def main() -> None:
    """Run both retrievers on a fresh storage root (so encoding is timed) and record the numbers."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--storage", default=None, help="storage root (default: a fresh temporary folder)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root = args.storage or tempfile.mkdtemp(prefix="synthir-bench-")
    rows = []
    for retriever in ("bm25", "dense"):
        res = run_eval(EvalConfig(retriever=retriever, storage=root))
        rows.append({
            "retriever": "BM25 (bm25s, k1=0.9 b=0.4)" if retriever == "bm25" else "all-MiniLM-L6-v2 (bundled)",
            **res["metrics"],
            "wall_s": res["wall_s"],
            "docs_per_s": res.get("docs_per_s", ""),
        })
    result = {"date": date.today().isoformat(), "machine": machine(), "commit": git_commit(), "rows": rows}
    storage.write_json(str(ROOT / "bench" / "results" / "eval-scifact.json"), result)
    cols = ["retriever", *METRICS, "wall_s", "docs_per_s"]
    print(format_table(rows, cols, percent=METRICS))
    bench_md = ROOT / "docs" / "benchmarks.md"
    section = (f"\n### SciFact test, full corpus (5,183 docs, 300 queries) — {result['date']}, {result['machine']}, "
               f"commit {result['commit']}\n\n`python bench/eval_scifact.py`; metrics in %, wall time includes corpus "
               f"encoding on local Ray Data (one encoder actor).\n\n{markdown_table(rows, cols, percent=METRICS)}\n")
    with open(bench_md, "a") as f:
        f.write(section)
    if args.json:
        print(json_line({f"{'bm25' if 'BM25' in r['retriever'] else 'dense'}/{m}": r[m] for r in rows for m in METRICS}))


if __name__ == "__main__":
    main()
