"""Benchmark: does the http engine keep its configured concurrency busy?

Starts the project's OpenAI-compatible server (echo backend, fixed latency) as a separate process on
127.0.0.1, sends `rounds x concurrency` distinct requests through the http engine at several concurrency
levels, and reports requests/s against the ideal concurrency / latency. Target (issue 3): >= 90 %.
Writes bench/results/http-concurrency.json, a PNG next to it, and a table to docs/benchmarks.md.
Run: python bench/http_concurrency.py [--latency-ms 200] [--levels 4,16,64] [--json]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import httpx

from synthir import storage
from synthir.eval.report import format_table, json_line, markdown_table
from synthir.llm.engines import HTTPEngineConfig, complete_http
from synthir.llm.store import ChatRequest, Ledger, ResponseStore
from synthir.manifest import git_commit

ROOT = Path(__file__).resolve().parents[1]


def _start_server(latency_ms: float) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "synthir.serving.llm_server", "--port", str(port), "--model", "echo",
                             "--latency-ms", str(latency_ms), "--batch-size", "256"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{base}/v1/models", timeout=1).raise_for_status()
            return proc, base
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start")


def main() -> None:
    """Measure requests/s per concurrency level and record it."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--latency-ms", type=float, default=200.0)
    ap.add_argument("--levels", default="4,16,64")
    ap.add_argument("--rounds", type=int, default=20, help="requests per level = rounds x concurrency")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    proc, base = _start_server(args.latency_ms)
    rows = []
    try:
        # Untimed warm-up: the first call pays for importing the openai client and opening connections.
        complete_http([ChatRequest.make("bench/warmup", "echo", [{"role": "user", "content": "warm-up"}], {})],
                      ResponseStore(tempfile.mkdtemp(prefix="synthir-bench-store-")), HTTPEngineConfig(base_url=f"{base}/v1"), Ledger())
        for level in [int(x) for x in args.levels.split(",")]:
            n = args.rounds * level
            reqs = [ChatRequest.make(f"bench/{level}/{i}", "echo", [{"role": "user", "content": f"q {level} {i}"}], {"temperature": 0.0})
                    for i in range(n)]
            store = ResponseStore(tempfile.mkdtemp(prefix="synthir-bench-store-"))
            ledger = Ledger()
            start = time.perf_counter()
            errors = complete_http(reqs, store, HTTPEngineConfig(base_url=f"{base}/v1", concurrency=level), ledger)
            seconds = time.perf_counter() - start
            ideal = level / (args.latency_ms / 1000)
            rows.append({"concurrency": level, "requests": n, "errors": len(errors), "seconds": round(seconds, 2),
                         "req_per_s": round(n / seconds, 1), "ideal_req_per_s": round(ideal, 1),
                         "utilisation": round(n / seconds / ideal, 3)})
    finally:
        proc.kill()
    machine = f"{platform.machine()} {os.cpu_count()} cores, CPU"
    result = {"date": date.today().isoformat(), "machine": machine, "commit": git_commit(), "latency_ms": args.latency_ms, "rows": rows}
    storage.write_json(str(ROOT / "bench" / "results" / "http-concurrency.json"), result)
    from synthir.eval.report import bar_plot

    bar_plot([{"label": "measured", **{f"c={r['concurrency']}": r["utilisation"] for r in rows}}], "label",
             [f"c={r['concurrency']}" for r in rows], str(ROOT / "bench" / "results" / "http-concurrency.png"),
             title=f"http engine: share of ideal throughput ({args.latency_ms:.0f} ms server)")
    cols = ["concurrency", "requests", "errors", "seconds", "req_per_s", "ideal_req_per_s", "utilisation"]
    print(format_table(rows, cols))
    with open(ROOT / "docs" / "benchmarks.md", "a") as f:
        f.write(f"\n## http engine concurrency (`bench/http_concurrency.py`) — {result['date']}, {machine}, commit {result['commit']}\n\n"
                f"Echo backend with a fixed {args.latency_ms:.0f} ms latency, separate server process on 127.0.0.1; "
                f"utilisation = measured req/s / (concurrency / latency), after an untimed warm-up; every answer is "
                f"fsync'd to a local response store as in a real run. Target >= 0.90. Plot: "
                f"`bench/results/http-concurrency.png`.\n\n{markdown_table(rows, cols)}\n")
    if args.json:
        print(json_line({f"utilisation@{r['concurrency']}": r["utilisation"] for r in rows}))


if __name__ == "__main__":
    main()
