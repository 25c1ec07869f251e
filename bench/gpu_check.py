"""GPU check: the CUDA paths of dense training and encoding, run on a machine with an NVIDIA GPU.

What it runs (each part is timed and its numbers land in one JSON object):

1. ``losses``: every loss on the same random embeddings on the CPU (fp32), on CUDA (fp32) and on CUDA under bf16
   autocast; the largest difference from the CPU value.
2. ``train``: stage-1 training of the encoder on Ray Train, one GPU worker (NCCL process group), on the recorded
   teacher's SciFact groups, three runs: fp32, bf16, and bf16 with a DeepSpeed ZeRO-2 config (its row's
   ``zero_stage`` says whether ZeRO stage 2 really ran); loss of the first and last steps, examples/s.
3. ``encode``: the whole SciFact corpus encoded by the Ray Data encoding job on the GPU (docs/s).

``--random-init`` re-initialises the encoder's weights (same architecture and tokenizer): for machines the
weights cannot be copied to. Throughput is unaffected; the losses still have to fall on the real groups.
Writes ``--out`` (default bench/results/gpu-check.json).
Run: python bench/gpu_check.py [--model PATH] [--random-init] [--steps 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from synthir import storage
from synthir.data.beir import load_beir
from synthir.dense import losses
from synthir.dense.encode import EncodeConfig, encode_corpus
from synthir.dense.encoder import EncoderConfig, local_model_path
from synthir.dense.groups import stage1_groups
from synthir.dense.train import TrainConfig, train_encoder
from synthir.eval.report import format_table, json_line
from synthir.manifest import git_commit
from synthir.runtime import RayConfig, init_ray
from synthir.synth.syntriever import Stage1Config, synthesize_stage1

ROOT = Path(__file__).resolve().parents[1]


def loss_parity(seed: int = 0) -> list[dict]:
    """Each loss on CPU fp32 vs CUDA fp32 vs CUDA bf16 autocast, same inputs."""
    g = torch.Generator().manual_seed(seed)
    q, cand = torch.randn(16, 64, generator=g), torch.randn(16, 4, 64, generator=g)
    pos = torch.zeros(16, 4, dtype=torch.bool)
    pos[:, :3] = True
    fns = {
        "distill_paper": lambda q, c: losses.multi_positive_distillation_loss(q, c, pos.to(q.device), mode="paper"),
        "distill_per_positive": lambda q, c: losses.multi_positive_distillation_loss(q, c, pos.to(q.device), mode="per_positive"),
        "infonce": lambda q, c: losses.in_batch_infonce_loss(q, c[:, :1]),
        "partial_pl": lambda q, c: losses.partial_plackett_luce_loss(q, c[:, :2]),
        "bradley_terry": lambda q, c: losses.bradley_terry_loss(q, c[:, :2]),
    }
    rows = []
    for name, fn in fns.items():
        cpu = fn(q, cand).item()
        gpu = fn(q.cuda(), cand.cuda()).item()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = fn(q.cuda().bfloat16(), cand.cuda().bfloat16()).float().item()
        rows.append({"loss": name, "cpu_fp32": round(cpu, 5), "cuda_fp32_diff": abs(gpu - cpu), "cuda_bf16_diff": abs(bf16 - cpu)})
    return rows


def prepare_model(model: str, random_init: bool, root: str) -> str:
    """A local copy of ``model``; with ``random_init`` its transformer weights are freshly initialised."""
    src = local_model_path(model)
    if not random_init:
        return src
    from transformers import AutoConfig, AutoModel

    dst = os.path.join(root, "model")
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(dst)).save_pretrained(dst)
    return dst


def train_row(name: str, groups, encoder: EncoderConfig, cfg: TrainConfig, out: str) -> dict:
    """Train once on the GPU and summarise the run."""
    s = train_encoder(groups, encoder, cfg, out)
    log = [json.loads(x) for x in storage.read_text(storage.join(out, "train_log.jsonl")).splitlines()]
    steps = [r for r in log if "loss" in r]
    return {"run": name, "steps": s["global_step"], "loss_first": round(steps[0]["loss"], 4),
            "loss_last": round(steps[-1]["loss"], 4), "examples_per_s": s["examples_per_s"],
            "train_s": s["train_runtime_s"], "wall_s": s["wall_s"], "zero_stage": s["deepspeed_zero_stage"]}


def main() -> None:
    """Run every check and write one JSON object."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=EncoderConfig().model)
    ap.add_argument("--random-init", action="store_true")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu-check.json"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device visible to torch")
    root = tempfile.mkdtemp(prefix="synthir-gpu-")
    result = {"date": date.today().isoformat(), "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "machine": f"{platform.machine()} {os.cpu_count()} cores", "commit": git_commit(),
              "random_init": args.random_init, "settings": vars(args)}
    t = time.perf_counter()
    result["losses"] = loss_parity()
    print(format_table(result["losses"], list(result["losses"][0])), flush=True)

    init_ray(RayConfig(num_cpus=os.cpu_count(), num_gpus=torch.cuda.device_count()))
    encoder = EncoderConfig(model=prepare_model(args.model, args.random_init, root))
    table = storage.read_table(synthesize_stage1(Stage1Config(storage=root))["table"])
    groups = stage1_groups(table, encoder, "full")
    base = dict(use_gpu=True, batch_size=args.batch_size, max_steps=args.steps, max_seq_length=128,
                distill_mode="per_positive", cpus_per_worker=2, lr=5e-5)
    zero2 = {"zero_optimization": {"stage": 2}, "bf16": {"enabled": "auto"}, "train_micro_batch_size_per_gpu": "auto",
             "gradient_accumulation_steps": "auto", "train_batch_size": "auto"}
    result["train"] = []
    for name, extra in (("fp32", {}), ("bf16", {"precision": "bf16"}),
                        ("bf16_deepspeed_zero2", {"precision": "bf16", "deepspeed": zero2})):
        try:
            row = train_row(name, groups, encoder, TrainConfig(**base, **extra), storage.join(root, name))
        except Exception as e:  # a failed part is recorded as such; the other parts still run
            row = {"run": name, "error": f"{type(e).__name__}: {e}"[:2000]}
        result["train"].append(row)
        storage.write_json(args.out, result)  # partial results survive a timeout
        print(format_table([row], list(row)), flush=True)

    corpus = load_beir("scifact", splits=()).corpus
    stats = encode_corpus(corpus, encoder, storage.join(root, "emb"), EncodeConfig(num_gpus_per_actor=1, batch_size=1024))
    result["encode"] = {k: stats[k] for k in ("rows", "dim", "seconds", "docs_per_s")}
    print(format_table([result["encode"]], list(result["encode"])), flush=True)
    result["wall_s"] = round(time.perf_counter() - t, 1)
    storage.write_json(args.out, result)
    if args.json:
        print(json_line({f"{r['run']}/examples_per_s": r.get("examples_per_s") for r in result["train"]}
                        | {"encode/docs_per_s": result["encode"]["docs_per_s"],
                           "bf16_max_loss_diff": max(r["cuda_bf16_diff"] for r in result["losses"])}))


if __name__ == "__main__":
    main()
