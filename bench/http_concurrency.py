"""Benchmark: does the http engine keep its configured concurrency busy?

Starts the project's OpenAI-compatible server (echo backend, fixed latency) as a separate process on
127.0.0.1, sends `rounds x concurrency` distinct requests through the http engine at several concurrency
levels, and reports requests/s against the ideal concurrency / latency. Target (issue 3): >= 90 %.
Each level first measures a reference client of near-zero overhead (raw HTTP/1.1 on asyncio streams, same
concurrency, same server) right before the engine, so the table separates what the engine costs (``vs_reference``)
from what this machine and the server allow at that moment (``reference_utilisation``).
Each run lasts ``rounds`` x latency (100 x 200 ms = 20 s by default): the target is about steady state, as in a
synthesis job of minutes to hours, so a run must be long enough that its fixed cost (starting the client, opening
``concurrency`` connections, draining the last wave: 0.05-0.3 s here) does not dominate. ``--rounds 20`` (4 s runs)
shows that cost; docs/benchmarks.md has both.
``--ray-actors N`` runs the engine as a Ray Data pool of N actors instead (``ray_actors: N`` in a synthesis
config; each actor gets concurrency / N), timed from the call, so the pool's start-up counts against it.
Writes bench/results/http-concurrency[-rayN].json, a PNG next to it, and a table to docs/benchmarks.md.
Run: python bench/http_concurrency.py [--latency-ms 200] [--levels 4,16,32,64] [--ray-actors 0] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from synthir.llm.stage import EngineStageConfig, answer_on_ray
from synthir.llm.store import ChatRequest, Ledger, ResponseStore
from synthir.manifest import git_commit

ROOT = Path(__file__).resolve().parents[1]


def _start_server(latency_ms: float, batch_size: int = 256) -> tuple[subprocess.Popen, str]:
    """The echo server with a fixed latency on a free port, as its own process; returns (process, base URL)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "synthir.serving.llm_server", "--port", str(port), "--model", "echo",
                             "--latency-ms", str(latency_ms), "--batch-size", str(batch_size)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{base}/v1/models", timeout=1).raise_for_status()
            return proc, base
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start")


async def _reference_client(port: int, level: int, n: int) -> float:
    """Send ``n`` requests over ``level`` keep-alive connections with hand-written HTTP/1.1; returns seconds.

    Written by hand on purpose: it is the measuring stick (no retries, no pool, no parsing beyond
    content-length), not a client anyone should use.
    """
    async def connection(k: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(k, n, level):
            body = json.dumps({"model": "echo", "messages": [{"role": "user", "content": f"ref {level} {i}"}],
                               "temperature": 0.0}).encode()
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(body), body))
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            await reader.readexactly(length)
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection(k) for k in range(level)))
    return time.perf_counter() - start


def _run_engine(reqs: list[ChatRequest], base: str, level: int, ray_actors: int) -> tuple[float, int]:
    """Answer ``reqs`` into a fresh store with the engine in this process or on ``ray_actors`` actors; (seconds, errors)."""
    store = ResponseStore(tempfile.mkdtemp(prefix="synthir-bench-store-"))
    start = time.perf_counter()
    if ray_actors:
        stage = EngineStageConfig(kind="http", num_actors=ray_actors, num_cpus_per_actor=0.5,
                                  http=HTTPEngineConfig(base_url=f"{base}/v1", concurrency=max(1, level // ray_actors)))
        errors = answer_on_ray(reqs, store, stage)[1]
    else:
        errors = complete_http(reqs, store, HTTPEngineConfig(base_url=f"{base}/v1", concurrency=level), Ledger())
    return time.perf_counter() - start, len(errors)


def _measure(base: str, level: int, n: int, latency_ms: float, tag: str, ray_actors: int = 0, pool_start_s: float = 0.0) -> dict:
    """One level once: the reference client, then the http engine with a fresh store; their utilisations."""
    ideal = level / (latency_ms / 1000)
    reference = n / asyncio.run(_reference_client(int(base.rsplit(":", 1)[1]), level, n)) / ideal
    reqs = [ChatRequest.make(f"bench/{tag}/{level}/{i}", "echo", [{"role": "user", "content": f"q {tag} {level} {i}"}],
                             {"temperature": 0.0}) for i in range(n)]
    seconds, errors = _run_engine(reqs, base, level, ray_actors)
    row = {"requests": n, "errors": errors, "seconds": round(seconds, 2), "req_per_s": round(n / seconds, 1),
           "ideal_req_per_s": round(ideal, 1), "utilisation": round(n / seconds / ideal, 3),
           "reference_utilisation": round(reference, 3), "vs_reference": round(n / seconds / ideal / reference, 3)}
    if ray_actors:  # the same run without the pool's start-up, as measured by a one-request call
        row["utilisation_excl_start"] = round(n / (seconds - pool_start_s) / ideal, 3)
    return row


def main() -> None:
    """Measure requests/s per concurrency level and record it."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--latency-ms", type=float, default=200.0)
    ap.add_argument("--levels", default="4,16,32,64")
    ap.add_argument("--rounds", type=int, default=100, help="requests per level = rounds x concurrency")
    ap.add_argument("--repeats", type=int, default=3, help="runs per level; the table shows the median run and the range")
    ap.add_argument("--ray-actors", type=int, default=0, help="0: the engine in this process; N: a Ray Data pool of N actors")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    if args.ray_actors:
        if any(level % args.ray_actors for level in levels):
            ap.error(f"--levels {args.levels}: every level must be a multiple of --ray-actors {args.ray_actors}")
        from synthir.runtime import RayConfig, init_ray

        init_ray(RayConfig(num_cpus=os.cpu_count()))
    proc, base = _start_server(args.latency_ms)
    rows = []
    try:
        # Untimed warm-up: the first call pays for importing the openai client (and Ray Data's first use).
        _run_engine([ChatRequest.make("bench/warmup", "echo", [{"role": "user", "content": "warm-up"}], {})], base, 1, args.ray_actors)
        pool_start_s = 0.0
        if args.ray_actors:  # what every call pays to start its actor pool: the median of 3 one-request calls, less the request
            pool_start_s = sorted(_run_engine([ChatRequest.make(f"bench/start/{k}", "echo", [{"role": "user", "content": f"start {k}"}], {})],
                                              base, args.ray_actors, args.ray_actors)[0] for k in range(3))[1] - args.latency_ms / 1000
        runs: dict[int, list[dict]] = {level: [] for level in levels}
        for rep in range(args.repeats):  # repeats interleave the levels, so a noisy minute hits all of them alike
            for level in levels:
                runs[level].append(_measure(base, level, args.rounds * level, args.latency_ms, tag=f"{rep}",
                                            ray_actors=args.ray_actors, pool_start_s=pool_start_s))
        for level in levels:
            ordered = sorted(runs[level], key=lambda r: r["utilisation"])
            rows.append({"concurrency": level, **ordered[len(ordered) // 2],  # the median run
                         "utilisation_range": f"{ordered[0]['utilisation']:.3f}-{ordered[-1]['utilisation']:.3f}",
                         "errors": sum(r["errors"] for r in runs[level])})
    finally:
        proc.kill()
    machine = f"{platform.machine()} {os.cpu_count()} cores, CPU"
    name = f"http-concurrency-ray{args.ray_actors}" if args.ray_actors else "http-concurrency"
    engine = f"A Ray Data pool of {args.ray_actors} engine actor{'s' * (args.ray_actors > 1)}" if args.ray_actors else "The engine in the benchmark's process"
    result = {"date": date.today().isoformat(), "machine": machine, "commit": git_commit(), "latency_ms": args.latency_ms,
              "ray_actors": args.ray_actors, "pool_start_s": round(pool_start_s, 2), "rounds": args.rounds, "repeats": args.repeats, "rows": rows, "runs": {str(k): v for k, v in runs.items()}}
    storage.write_json(str(ROOT / "bench" / "results" / f"{name}.json"), result)
    from synthir.eval.report import bar_plot

    bar_plot([{"label": label, **{f"c={r['concurrency']}": r[key] for r in rows}}
              for label, key in (("http engine", "utilisation"), ("reference client", "reference_utilisation"))], "label",
             [f"c={r['concurrency']}" for r in rows], str(ROOT / "bench" / "results" / f"{name}.png"),
             title=f"http engine{f' on {args.ray_actors} Ray actors' if args.ray_actors else ''}: share of ideal throughput ({args.latency_ms:.0f} ms server)")
    cols = ["concurrency", "requests", "errors", "seconds", "req_per_s", "ideal_req_per_s", "utilisation",
            "utilisation_range", "reference_utilisation", "vs_reference"] + (["utilisation_excl_start"] if args.ray_actors else [])
    print(format_table(rows, cols))
    with open(ROOT / "docs" / "benchmarks.md", "a") as f:
        f.write(f"\n## http engine concurrency (`bench/http_concurrency.py{f' --ray-actors {args.ray_actors}' if args.ray_actors else ''}`) — "
                f"{result['date']}, {machine}, commit {result['commit']}\n\n"
                f"{engine}{f' (timed from the call, so the pool start-up counts; a one-request call takes {pool_start_s:.1f} s more than the request, and utilisation_excl_start leaves that out)' if args.ray_actors else ''}. Echo backend with a fixed {args.latency_ms:.0f} ms latency, separate server process on 127.0.0.1; "
                f"{args.rounds} rounds per run ({args.rounds * args.latency_ms / 1000:.0f} s at the ideal rate); "
                f"utilisation = measured req/s / (concurrency / latency), after an untimed warm-up, the median of "
                f"{args.repeats} runs per level (range beside it); every answer is "
                f"fsync'd to a local response store as in a real run; reference_utilisation = a raw HTTP/1.1 client of near-zero "
                f"overhead just before, vs_reference = the engine's share of it. Target >= 0.90. Plot: "
                f"`bench/results/{name}.png`.\n\n{markdown_table(rows, cols)}\n")
    if args.json:
        print(json_line({f"utilisation@{r['concurrency']}": r["utilisation"] for r in rows}))


if __name__ == "__main__":
    main()
