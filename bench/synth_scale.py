"""Benchmark: corpus synthesis at scale (`synthir synth corpus`) against an OpenAI-compatible server with fixed latency.

Starts the project's echo server (``--latency-ms 200``) as its own process, writes an N-row Parquet corpus (SciFact
abstracts cycled, each row made distinct so every request is new), and runs ``synthir synth corpus`` as a fresh
process (its own local Ray) per (rows, concurrency) cell. Reports rows/s against the ideal concurrency / latency and
the peak RSS of the job's whole process tree (driver, Ray's GCS and raylet, the engine actors), sampled every 0.25 s.
Then a kill test: a run killed with SIGKILL (the whole process group) half way and rerun must publish every row
exactly once, with only the requests in flight at the kill sent twice.
Writes bench/results/synth-scale.json (a list of rows: concurrency, rows, rows_per_s, peak_rss_mb, latency_ms, ...),
a PNG next to it, and a table to docs/benchmarks.md.
Run: python bench/synth_scale.py [--rows 10000,100000] [--concurrency 64,128] [--latency-ms 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import httpx
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from synthir.data.beir import load_beir
from synthir.eval.report import format_table, json_line, markdown_table
from synthir.manifest import git_commit
from synthir.synth.corpus import read_output

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_concurrency import _start_server  # noqa: E402  (the same echo server as the http engine benchmark)

ROOT = Path(__file__).resolve().parents[1]
ACTORS = 2


def _corpus(path: Path, rows: int) -> Path:
    docs = load_beir("scifact", splits=("test",)).corpus
    texts = docs["text"].to_pylist()
    ids = [f"chunk-{i}" for i in range(rows)]
    table = pa.table({"id": ids, "text": [f"[{i}] {texts[i % len(texts)][:600]}" for i in range(rows)]})
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path / "part-0.parquet", row_group_size=5000)
    return path


def _tree_rss(proc: psutil.Process) -> float:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def _run(cfg_path: Path, kill_after_rows: int | None = None, store: Path | None = None) -> dict:
    cmd = [sys.executable, "-m", "synthir.cli", "synth", "corpus", "--config", str(cfg_path), "--json"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_worker_niceness": "0"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, start_new_session=True)
    ps, peak = psutil.Process(proc.pid), 0.0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(ps))
        if kill_after_rows and sum(1 for _ in (store / "objects").rglob("*.json")) >= kill_after_rows:
            victims = [ps, *ps.children(recursive=True)]  # Ray's workers leave the process group: kill the tree
            for v in victims:
                try:
                    v.send_signal(signal.SIGKILL)
                except psutil.NoSuchProcess:
                    pass
            proc.wait()
            return {"killed": True, "peak_rss_mb": round(peak, 1)}
        time.sleep(0.25)
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"synth corpus failed ({proc.returncode}): {out[-2000:]}")
    summary = json.loads(out.strip().splitlines()[-1])
    return {**summary, "peak_rss_mb": round(peak, 1), "process_wall_s": round(time.perf_counter() - start, 1)}


def _config(work: Path, corpus: Path, base: str, concurrency: int, batch_size: int) -> Path:
    cfg = {"input": str(corpus), "id_column": "id", "prompt": "genret_keywords", "columns": {"context": "text"},
           "model": "echo", "max_tokens": 16, "storage": str(work / "runs"),
           "http": {"base_url": f"{base}/v1", "concurrency": concurrency // ACTORS}, "min_actors": ACTORS,
           "max_actors": ACTORS, "batch_size": batch_size, "cpus_per_actor": 0.25, "ray": {"num_cpus": 2}}
    work.mkdir(parents=True, exist_ok=True)
    path = work / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def main() -> None:
    """Run the grid and the kill test; write JSON, PNG and the docs row."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="10000,100000")
    ap.add_argument("--concurrency", default="64,128")
    ap.add_argument("--latency-ms", type=float, default=200)
    ap.add_argument("--kill-rows", type=int, default=10000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    server, base = _start_server(args.latency_ms, batch_size=1024)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="synth-scale-") as tmp:
            tmp = Path(tmp)
            for rows in [int(r) for r in args.rows.split(",")]:
                corpus = _corpus(tmp / f"in-{rows}", rows)
                for conc in [int(c) for c in args.concurrency.split(",")]:
                    work = tmp / f"run-{rows}-{conc}"
                    httpx.post(f"{base}/stats/reset")
                    out = _run(_config(work, corpus, base, conc, batch_size=max(64, conc)))
                    stats = httpx.get(f"{base}/stats").json()
                    ideal = conc / (args.latency_ms / 1000)
                    results.append({"concurrency": conc, "rows": rows, "rows_per_s": round(rows / out["wall_s"], 1),
                                    "ideal_rows_per_s": ideal, "utilisation": round(rows / out["wall_s"] / ideal, 3),
                                    "peak_rss_mb": out["peak_rss_mb"], "latency_ms": args.latency_ms,
                                    "job_wall_s": out["wall_s"], "process_wall_s": out["process_wall_s"],
                                    "server_answered": stats["answered"], "duplicates": stats["duplicates"]})
                    print(format_table([results[-1]], list(results[-1])), flush=True)
            # kill -9 half way, then rerun: every row exactly once, only the in-flight requests repeated
            rows, conc = args.kill_rows, max(int(c) for c in args.concurrency.split(","))
            corpus = _corpus(tmp / "in-kill", rows)
            work = tmp / "run-kill"
            httpx.post(f"{base}/stats/reset")
            cfg = _config(work, corpus, base, conc, batch_size=max(64, conc))
            killed = _run(cfg, kill_after_rows=rows // 2, store=work / "runs" / "responses")
            stored = sum(1 for _ in (work / "runs" / "responses" / "objects").rglob("*.json"))
            rerun = _run(cfg)
            ids = read_output(rerun["output"])["id"].to_pylist()
            stats = httpx.get(f"{base}/stats").json()
            kill = {"concurrency": conc, "rows": rows, "kill": True, "stored_at_kill": stored, "rerun_sent": rerun["requests_sent"],
                    "rerun_from_store": rerun["from_store"], "published_rows": len(ids), "distinct_ids": len(set(ids)),
                    "lost": rows - len(set(ids)), "duplicated": len(ids) - len(set(ids)),
                    "server_answered": stats["answered"], "answered_twice": stats["duplicates"],
                    "latency_ms": args.latency_ms, "rows_per_s": None, "peak_rss_mb": max(killed["peak_rss_mb"], rerun["peak_rss_mb"])}
            results.append(kill)
            print(json.dumps(kill), flush=True)
    finally:
        server.kill()
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "synth-scale.json").write_text(json.dumps(results, indent=1) + "\n")
    meta = {"date": str(date.today()), "machine": f"{os.cpu_count()} CPUs, no GPU", "commit": git_commit(),
            "actors": ACTORS, "note": "echo server with fixed latency; SciFact abstracts cycled, each row distinct"}
    (out_dir / "synth-scale.meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    grid = [r for r in results if not r.get("kill")]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for rows in sorted({r["rows"] for r in grid}):
        pts = [r for r in grid if r["rows"] == rows]
        ax.plot([r["concurrency"] for r in pts], [r["rows_per_s"] for r in pts], marker="o", label=f"{rows} rows")
    cs = sorted({r["concurrency"] for r in grid})
    ax.plot(cs, [c / (args.latency_ms / 1000) for c in cs], "k--", label="concurrency / latency")
    ax.set_xlabel("requests in flight (all actors)"), ax.set_ylabel("rows/s"), ax.legend()
    ax.set_title(f"synth corpus, {args.latency_ms:.0f} ms server latency")
    fig.tight_layout(), fig.savefig(out_dir / "synth-scale.png", dpi=120)
    keys = ["rows", "concurrency", "rows_per_s", "ideal_rows_per_s", "utilisation", "peak_rss_mb", "job_wall_s", "duplicates"]
    section = (f"\n### Corpus synthesis at scale ({meta['date']}, {meta['machine']}, commit {meta['commit']})\n\n"
               f"`python bench/synth_scale.py` - `synthir synth corpus` with {ACTORS} http actors against the echo server at "
               f"{args.latency_ms:.0f} ms per request; peak RSS is the whole job process tree (driver + its local Ray).\n\n"
               + markdown_table(grid, keys) +
               f"\n\nKill test: {kill['rows']} rows at concurrency {kill['concurrency']}, SIGKILL of the job's whole process tree "
               f"after {kill['stored_at_kill']} answers were stored, then a rerun: {kill['published_rows']} rows published, "
               f"{kill['lost']} lost, {kill['duplicated']} duplicated; the rerun sent {kill['rerun_sent']} requests and took "
               f"{kill['rerun_from_store']} from the store; {kill['answered_twice']} requests were answered twice by the "
               f"server (those in flight at the kill).\n")
    docs = ROOT / "docs" / "benchmarks.md"
    docs.write_text(docs.read_text() + section)
    print(format_table(grid, keys))
    if args.json:
        print(json_line({"rows": results}))


if __name__ == "__main__":
    main()
