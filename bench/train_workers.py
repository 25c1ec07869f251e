"""Benchmark: stage-1 training throughput with 1 vs 2 Ray Train workers on this machine (issue 4).

Same groups (the recorded teacher's first 256 SciFact training queries), same per-worker batch, same steps:
1 worker x 1 thread, 2 workers x 1 thread (gloo DDP), and 1 worker x 2 threads for reference. Examples/s is
training groups per second over all workers (the Trainer's ``train_samples_per_second``).
Writes bench/results/train-workers.json and a section in docs/benchmarks.md.
Run: python bench/train_workers.py [--steps 8] [--json]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from datetime import date
from pathlib import Path

from synthir import storage
from synthir.dense.encoder import EncoderConfig
from synthir.dense.groups import stage1_groups
from synthir.dense.train import TrainConfig, train_encoder
from synthir.eval.report import format_table, json_line, markdown_table
from synthir.manifest import git_commit
from synthir.runtime import RayConfig, init_ray
from synthir.synth.syntriever import Stage1Config, synthesize_stage1

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    """Train the same steps three ways and record examples/s."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=16, help="groups per worker per step")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="synthir-bench-workers-")
    table = storage.read_table(synthesize_stage1(Stage1Config(storage=root, limit=256))["table"])
    groups = stage1_groups(table, EncoderConfig(), "full")
    init_ray(RayConfig(num_cpus=os.cpu_count()))
    rows = []
    for workers, threads in ((1, 1), (2, 1), (1, 2)):
        cfg = TrainConfig(num_workers=workers, torch_threads=threads, cpus_per_worker=threads, batch_size=args.batch_size,
                          max_steps=args.steps, max_seq_length=128, distill_mode="per_positive")
        s = train_encoder(groups, EncoderConfig(), cfg, storage.join(root, f"w{workers}-t{threads}"))
        rows.append({"workers": workers, "threads_per_worker": threads, "steps": s["global_step"],
                     "examples_per_s": s["examples_per_s"], "train_s": s["train_runtime_s"], "wall_s": s["wall_s"]})
        print(format_table(rows[-1:], list(rows[-1])), flush=True)
    ratio = rows[1]["examples_per_s"] / rows[0]["examples_per_s"]
    result = {"date": date.today().isoformat(), "machine": f"{platform.machine()} {os.cpu_count()} cores, CPU",
              "commit": git_commit(), "rows": rows, "ratio_2_vs_1_workers": round(ratio, 3)}
    storage.write_json(str(ROOT / "bench" / "results" / "train-workers.json"), result)
    cols = list(rows[0])
    print(format_table(rows, cols))
    print(f"2 workers / 1 worker examples/s: {ratio:.2f}")
    with open(ROOT / "docs" / "benchmarks.md", "a") as f:
        f.write(f"\n### Stage-1 training, 1 vs 2 Ray Train workers — {result['date']}, {result['machine']}, commit "
                f"{result['commit']}\n\n`python bench/train_workers.py --steps {args.steps}` (MiniLM, {args.batch_size} "
                f"groups x 5 texts per worker and step, max_seq_length 128, gloo DDP). **2 vs 1 workers: "
                f"{ratio:.2f}x examples/s.**\n\n{markdown_table(rows, cols)}\n")
    if args.json:
        print(json_line({"ratio_2_vs_1_workers": ratio, **{f"w{r['workers']}t{r['threads_per_worker']}/examples_per_s": r["examples_per_s"] for r in rows}}))


if __name__ == "__main__":
    main()
