"""Load test of the retrieval service: batched vs unbatched synthir, and Infinity as a peer, on 127.0.0.1.

Serves one dense bundle (default: the bundled all-MiniLM-L6-v2 over the full SciFact corpus, built once into
./runs/serving/) and, per mode and client concurrency, sends single-text requests for ``--seconds`` (after an
untimed warm-up) from a separate client process (aiohttp, one connection per concurrent client, bounded by
``--max-requests``). The texts are SciFact's 1,109 real queries, cycled.

Modes, one at a time, so they never share the 2 cores:
- ``batched``: ``/v1/embeddings`` with ``@serve.batch(max_batch_size=32)`` in the encoder, and the ingress
  sending its concurrent requests to the encoder as one call (``ingress.batch.max_batch_size=64``);
- ``unbatched``: the same app with ``max_batch_size=1`` in both;
- ``infinity``: Infinity (``infinity-emb``, a production embedding server with dynamic batching) serving the
  same MiniLM folder from its own virtualenv (``bench/.venvs/infinity``, created from
  ``bench/infinity-constraints.txt`` on first use), its OpenAI-compatible ``/v1/embeddings``;
- with ``--search`` also ``batched`` / ``unbatched`` over ``/v1/search`` (encode + faiss, k=10): rows with
  ``endpoint: search``.
Both synthir modes run with Serve's access log off, the tuned Serve flags (``--no-tuned``: Serve's defaults) and
``--torch-threads`` (2) in the encoder, Ray's workers at nice 0 like the client and Infinity (Ray's default: 15), and require the API key; Infinity runs as it ships (torch's default
threads, 2 here) and has no auth.

Writes bench/results/serve-load.json (rows: mode, endpoint, concurrency, qps, p50_ms, p99_ms, errors), a PNG
beside it and a section in docs/benchmarks.md.
Run: python bench/serve_load.py [--levels 1,4,16,32] [--seconds 15] [--search] [--no-infinity] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INFINITY_VENV = ROOT / "bench" / ".venvs" / "infinity"
KEY = "bench-" + os.urandom(12).hex()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the client (runs in its own process) ------------------------------------------------------------------------

async def _client(url: str, body_key: str, texts: list[str], concurrency: int, seconds: float, warmup_s: float,
                  max_requests: int, headers: dict) -> dict:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    sent = 0
    stop_at = [0.0]
    counting = [False]

    async def worker(i: int, session) -> None:
        nonlocal errors, sent
        j = i
        while time.perf_counter() < stop_at[0] and sent < max_requests:
            payload = {body_key: texts[j % len(texts)], **({"model": "dense"} if body_key == "input" else {"k": 10})}
            j += concurrency
            t = time.perf_counter()
            try:
                async with session.post(url, json=payload, headers=headers) as r:
                    await r.read()
                    ok = r.status == 200
            except aiohttp.ClientError:
                ok = False
            if counting[0]:
                sent += 1
                if ok:
                    latencies.append(time.perf_counter() - t)
                else:
                    errors += 1

    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=120)) as session:
        stop_at[0] = time.perf_counter() + warmup_s
        await asyncio.gather(*(worker(i, session) for i in range(concurrency)))
        counting[0] = True
        start = time.perf_counter()
        stop_at[0] = start + seconds
        await asyncio.gather(*(worker(i, session) for i in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    pick = lambda q: round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1) if latencies else None
    return {"requests": sent, "errors": errors, "seconds": round(elapsed, 2), "qps": round(len(latencies) / elapsed, 1),
            "p50_ms": pick(0.50), "p99_ms": pick(0.99)}


def _measure(url: str, body_key: str, concurrency: int, args, headers: dict) -> dict:
    """One level, from a separate client process (so the client's CPU is not this process's Ray driver)."""
    spec = json.dumps({"url": url, "body_key": body_key, "concurrency": concurrency, "seconds": args.seconds,
                       "warmup_s": args.warmup, "max_requests": args.max_requests, "headers": headers})
    out = subprocess.run([sys.executable, __file__, "--client", spec], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"load client failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _client_main(spec: str) -> None:
    s = json.loads(spec)
    from synthir.data.beir import load_beir

    texts = load_beir("scifact", splits=()).queries["text"].to_pylist()
    print(json.dumps(asyncio.run(_client(s["url"], s["body_key"], texts, s["concurrency"], s["seconds"], s["warmup_s"],
                                         s["max_requests"], s["headers"]))))


# --- the servers -------------------------------------------------------------------------------------------------

def _bundle(args) -> str:
    from synthir.runtime import RayConfig, init_ray
    from synthir.serving.bundle import BuildConfig, build_dense, resolve

    if args.run:
        return resolve(args.run)
    out = ROOT / "runs" / "serving" / "scifact-minilm"
    if (out / "retriever.json").exists():
        return str(out)
    init_ray(RayConfig(num_cpus=os.cpu_count()))
    build_dense(BuildConfig(dataset="scifact", storage=str(ROOT / "runs")), str(out))
    return str(out)


def _synthir_rows(bundle: str, args, levels: list[int]) -> list[dict]:
    from ray import serve

    from synthir.runtime import RayConfig, init_ray
    from synthir.serving.config import ServeConfig
    from synthir.serving.launch import deploy, url

    os.environ["SYNTHIR_API_KEY"] = KEY
    init_ray(RayConfig(num_cpus=os.cpu_count()))
    rows = []
    port = _free_port()
    for mode, batch in (("batched", args.batch_size), ("unbatched", 1)):
        cfg = ServeConfig(run=bundle, port=port, access_log=False, log_level="WARNING",
                          encoder={"num_cpus": 1, "torch_threads": args.torch_threads, "max_ongoing_requests": 64,
                                                         "batch": {"max_batch_size": batch}},
                          searcher={"num_cpus": 0.5},
                          ingress={"num_cpus": 0.5, "max_ongoing_requests": 256, "batch": {"max_batch_size": 64 if batch > 1 else 1}})
        deploy(cfg)
        headers = {"Authorization": f"Bearer {KEY}"}
        for endpoint in ("embeddings", "search") if args.search else ("embeddings",):
            for level in levels:
                res = _measure(f"{url(cfg)}/v1/{endpoint}", "input" if endpoint == "embeddings" else "query", level, args, headers)
                rows.append({"mode": mode, "endpoint": endpoint, "concurrency": level, **res})
                print(rows[-1], flush=True)
        serve.delete(cfg.name)
    serve.shutdown()
    return rows


def _infinity_venv() -> Path:
    exe = INFINITY_VENV / "bin" / "infinity_emb"
    if exe.exists():
        return exe
    subprocess.run([sys.executable, "-m", "venv", str(INFINITY_VENV)], check=True)
    pip = [str(INFINITY_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["torch==2.13.0"], check=True)  # first: the CPU wheel, never a CUDA build
    subprocess.run(pip + ["-c", str(ROOT / "bench" / "infinity-constraints.txt"), "infinity-emb[server,torch]==0.0.78"],
                   check=True)
    return exe


def _infinity_rows(args, levels: list[int]) -> tuple[list[dict], dict]:
    from synthir.dense.encoder import bundled_minilm_path

    exe = _infinity_venv()
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1",
           "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
    cmd = [str(exe), "v2", "--model-id", bundled_minilm_path(), "--served-model-name", "dense", "--host", "127.0.0.1",
           "--port", str(port), "--engine", "torch", "--device", "cpu", "--batch-size", str(args.batch_size),
           "--url-prefix", "/v1"]
    (ROOT / "runs").mkdir(exist_ok=True)
    log = open(ROOT / "runs" / "infinity.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    import httpx

    version = subprocess.run([str(INFINITY_VENV / "bin" / "python"), "-c",
                              "import importlib.metadata as m; print(m.version('infinity-emb'))"],
                             capture_output=True, text=True).stdout.strip()
    try:
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"Infinity did not start; see {ROOT / 'runs' / 'infinity.log'}")
            time.sleep(0.5)
        rows = []
        for level in levels:
            res = _measure(f"http://127.0.0.1:{port}/v1/embeddings", "input", level, args, {})
            rows.append({"mode": "infinity", "endpoint": "embeddings", "concurrency": level, **res})
            print(rows[-1], flush=True)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    return rows, {"infinity_emb": version, "command": " ".join(cmd[1:])}


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for mode in dict.fromkeys(r["mode"] for r in rows):
        for endpoint in ("embeddings", "search"):
            sel = [r for r in rows if r["mode"] == mode and r["endpoint"] == endpoint]
            if sel:
                label = f"{mode} /{endpoint}"
                a.plot([r["concurrency"] for r in sel], [r["qps"] for r in sel], marker="o", label=label)
                b.plot([r["concurrency"] for r in sel], [r["p99_ms"] for r in sel], marker="o", label=label)
    for ax, title in ((a, "requests/s"), (b, "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("client concurrency")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    a.legend(fontsize=8)
    fig.suptitle("synthir on Ray Serve vs Infinity: one MiniLM query per request, 127.0.0.1")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    """Measure every mode at every level, then record the table, JSON and plot."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--run", help="bundle to serve (default: bundled MiniLM over SciFact, built into ./runs/serving/)")
    ap.add_argument("--levels", default="1,4,16,32")
    ap.add_argument("--seconds", type=float, default=15.0, help="timed seconds per level")
    ap.add_argument("--warmup", type=float, default=3.0, help="untimed seconds per level before it")
    ap.add_argument("--max-requests", type=int, default=20000, help="cap on timed requests per level")
    ap.add_argument("--batch-size", type=int, default=32, help="max batch of the batched mode and of Infinity")
    ap.add_argument("--search", action="store_true", help="also load /v1/search (encode + faiss)")
    ap.add_argument("--no-infinity", action="store_true")
    ap.add_argument("--torch-threads", type=int, default=2, help="the synthir encoder's torch threads")
    ap.add_argument("--tuned", action=argparse.BooleanOptionalAction, default=True,
                    help="Ray Serve's HAProxy ingress and same-loop flags (synthir.serving.launch.TUNED_SERVE_ENV)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.client:
        return _client_main(args.client)
    from synthir import storage
    from synthir.eval.report import format_table, json_line, markdown_table
    from synthir.manifest import git_commit

    levels = [int(x) for x in args.levels.split(",")]
    if args.tuned:
        from synthir.serving.launch import use_tuned_env

        use_tuned_env()  # before Ray starts (building the bundle starts it)
    # Ray starts its workers at nice 15; the client and Infinity run at 0, so on a shared 2-core box the client
    # would take CPU from synthir's replicas but not from Infinity. Same priority for all.
    os.environ.setdefault("RAY_worker_niceness", "0")
    bundle = _bundle(args)
    rows = _synthir_rows(bundle, args, levels)
    peer = {}
    if not args.no_infinity:
        inf_rows, peer = _infinity_rows(args, levels)
        rows += inf_rows
    machine = f"{platform.machine()} {os.cpu_count()} cores, CPU"
    emb = {(r["mode"], r["concurrency"]): r for r in rows if r["endpoint"] == "embeddings"}
    for r in rows:
        base = emb.get(("unbatched", r["concurrency"]))
        inf = emb.get(("infinity", r["concurrency"]))
        if r["endpoint"] == "embeddings" and base and r["mode"] == "batched":
            r["x_unbatched"] = round(r["qps"] / base["qps"], 2) if base["qps"] else None
        if r["endpoint"] == "embeddings" and inf and r["mode"] == "batched":
            r["x_infinity"] = round(r["qps"] / inf["qps"], 2) if inf["qps"] else None
    result = {"date": date.today().isoformat(), "machine": machine, "commit": git_commit(), "bundle": bundle,
              "tuned": args.tuned, "torch_threads": args.torch_threads,
              "seconds": args.seconds, "warmup_s": args.warmup, "batch_size": args.batch_size, "peer": peer, "rows": rows}
    storage.write_json(str(ROOT / "bench" / "results" / "serve-load.json"), rows)
    storage.write_json(str(ROOT / "bench" / "results" / "serve-load-meta.json"), {k: v for k, v in result.items() if k != "rows"})
    _plot(rows, ROOT / "bench" / "results" / "serve-load.png")
    cols = ["mode", "endpoint", "concurrency", "requests", "errors", "qps", "p50_ms", "p99_ms", "x_unbatched", "x_infinity"]
    print(format_table(rows, cols))
    with open(ROOT / "docs" / "benchmarks.md", "a") as f:
        f.write(f"\n## Retrieval service load test (`bench/serve_load.py`) — {result['date']}, {machine}, commit "
                f"{result['commit']}\n\n`python bench/serve_load.py --levels {args.levels} --seconds {args.seconds:g}"
                f"{' --search' if args.search else ''}`: one text per request (SciFact queries, cycled) from a separate "
                f"aiohttp client process on 127.0.0.1, {args.seconds:g} s per level after {args.warmup:g} s warm-up; "
                f"synthir = Ray Serve (ingress 0.5 CPU, encoder 1 CPU with {args.torch_threads} torch thread(s), searcher "
                f"0.5 CPU; access log off; Serve flags: {'tuned (TUNED_SERVE_ENV)' if args.tuned else 'defaults'}), batched = "
                f"ingress `batch.max_batch_size=64` + encoder "
                f"`max_batch_size={args.batch_size}`, unbatched = 1; infinity = {peer.get('infinity_emb', 'not run')} "
                f"(`{peer.get('command', '')}`), same MiniLM folder, batch {args.batch_size}. Plot: "
                f"`bench/results/serve-load.png`.\n\n{markdown_table(rows, cols)}\n")
    if args.json:
        print(json_line({f"{r['mode']}/{r['endpoint']}/c{r['concurrency']}/qps": r["qps"] for r in rows}))


if __name__ == "__main__":
    main()
