"""RPO (DPO + NLL) on mined preference pairs: TRL's ``DPOTrainer`` inside Ray Train, the SFT model as reference.

    L_rpo = -log σ( β log[π(d'_p|q)/π_ref(d'_p|q)] - β log[π(d'_n|q)/π_ref(d'_n|q)] ) - α log π(d'_p|q) / |d'_p|

with β = 0.5, α = 1.0, lr 1e-7, batch 64, 1 epoch (Wen et al. 2025). In TRL this is
``DPOConfig(loss_type=["sigmoid", "sft"], loss_weights=[1.0, α], beta=β)``: "sigmoid" is the DPO term and "sft"
the NLL of the chosen identifier's tokens (TRL averages it over the batch's chosen tokens, which is the paper's
per-identifier average when the batch's identifiers have equal length). The prompt is rendered as in SFT and
the identifiers are the exact texts the trie holds, so DPO's tokenisation gives the trained token sequences
(``tests/test_genret_rpo.py`` checks both, and the loss against the formula).

Example::

    pairs, counts = mined_pairs(queries, ranked, depth=10)
    summary = train_rpo(pairs, "<sft run>/model", RPOConfig(), "<out>")
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any, Literal

from pydantic import Field

from synthir import storage
from synthir.generative.sft_data import render_prompt
from synthir.train_loop import MARKER, WorkerGroupConfig, fit_on_ray, is_trained


class RPOConfig(WorkerGroupConfig):
    """The preference stage (paper: β 0.5, α 1.0, lr 1e-7, batch 64, 1 epoch, top-10 mined negatives)."""

    beta: float = Field(0.5, gt=0)
    alpha: float = Field(1.0, ge=0, description="weight of the NLL term")
    negatives: Literal["mined", "random"] = Field("mined", description="random: the paper's ablation")
    depth: int = Field(10, ge=1, description="negatives come from the SFT model's top-N (paper: 5 or 10)")
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1, description="pairs per device and step")
    gradient_accumulation: int = Field(8, ge=1, description="global batch = batch_size x accumulation x workers (paper 64)")
    lr: float = Field(1e-7, gt=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    max_prompt_tokens: int = Field(288, ge=8)


def identifier_text(tokenizer: Any, identifier: str) -> str:
    """The completion text of an identifier as DPO sees it: an atomic token alone, a semantic ID after a space."""
    return identifier if identifier in tokenizer.get_added_vocab() else " " + identifier


def preference_rows(pairs: list[dict], identifiers: dict[str, str], tokenizer: Any, max_prompt_tokens: int) -> list[dict]:
    """DPO rows ``{prompt, chosen, rejected}`` from pairs of (query, chosen doc, rejected doc)."""
    return [{"prompt": render_prompt(tokenizer, p["query"], max_prompt_tokens),
             "chosen": identifier_text(tokenizer, identifiers[p["chosen"]]),
             "rejected": identifier_text(tokenizer, identifiers[p["rejected"]])} for p in pairs]


def dpo_args(config: RPOConfig, output_dir: str, rank: int) -> Any:
    """TRL's ``DPOConfig`` for RPO: sigmoid DPO + weighted NLL on the chosen identifier."""
    from trl import DPOConfig

    return DPOConfig(
        output_dir=output_dir, beta=config.beta, loss_type=["sigmoid", "sft"], loss_weights=[1.0, config.alpha],
        num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.lr, warmup_steps=config.warmup_ratio, bf16=config.precision == "bf16",
        fp16=config.precision == "fp16", use_cpu=not config.use_gpu, deepspeed=config.deepspeed,
        save_strategy="steps" if config.save_steps else "epoch", save_steps=config.save_steps or 500,
        save_total_limit=1, logging_steps=1, report_to="none", seed=config.seed, disable_tqdm=rank != 0,
        max_length=None,
    )


def _rpo_loop(loop_config: dict) -> None:
    """Ray Train worker: DPOTrainer (RPO loss) from the SFT model, which is also the frozen reference."""
    if os.path.isdir(loop_config["cwd"]):
        os.chdir(loop_config["cwd"])
    config = RPOConfig.model_validate(loop_config["rpo"])
    if config.deepspeed is not None and not config.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import datasets
    import ray.train
    import torch
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOTrainer

    from synthir.generative.trie import TokenTrie
    from synthir.train_loop import FailOnce, ReportStep, StepLog, publish, train_resuming

    torch.set_num_threads(config.torch_threads or max(1, int(config.cpus_per_worker)))
    context = ray.train.get_context()
    rank = context.get_world_rank()
    work = tempfile.mkdtemp(prefix="synthir-rpo-")
    sft = os.path.join(work, "sft")
    storage.copy_tree(loop_config["sft_model"], sft)
    tokenizer = AutoTokenizer.from_pretrained(sft)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(sft)
    reference = AutoModelForCausalLM.from_pretrained(sft).eval()
    table = storage.read_table(storage.join(loop_config["out_uri"], "pairs.parquet")).select(["prompt", "chosen", "rejected"])
    resume = ray.train.get_checkpoint()
    step_log = StepLog()
    trainer = DPOTrainer(model=model, ref_model=reference, args=dpo_args(config, os.path.join(work, "hf"), rank),
                         train_dataset=datasets.Dataset(datasets.table.InMemoryTable(table)), processing_class=tokenizer,
                         callbacks=[RayTrainReportCallback(), step_log, FailOnce(rank, resume is not None, config.fail_at_step),
                                    ReportStep(rank, loop_config.get("progress"))])
    trainer = prepare_trainer(trainer)
    output, resumed_from = train_resuming(trainer, resume, work)
    if rank == 0:
        final = os.path.join(work, "final")
        trainer.save_model(final)
        tokenizer.save_pretrained(final)
        TokenTrie.load(sft).save(final)
        publish(final, loop_config["out_uri"], step_log.rows,
                {"global_step": output.global_step, "resumed_from_step": resumed_from, "train_loss": output.training_loss,
                 "world_size": context.get_world_size(), "train_runtime_s": output.metrics.get("train_runtime")})
    ray.train.report({"done": 1, "global_step": output.global_step})
    shutil.rmtree(work, ignore_errors=True)


def train_rpo(rows: list[dict], sft_model: str, config: RPOConfig, out_uri: str, desc: str = "RPO") -> dict:
    """Train RPO from ``sft_model`` on DPO ``rows`` (``preference_rows``) with Ray Train; the model lands in ``<out_uri>/model``."""
    import pyarrow as pa

    if not rows:
        raise ValueError("no preference pairs: the SFT model ranked every positive first (or no queries were mined)")
    if is_trained(out_uri):
        return storage.read_json(storage.join(out_uri, MARKER))
    start = time.perf_counter()
    storage.write_table(storage.join(out_uri, "pairs.parquet"), pa.Table.from_pylist(rows))
    fit_on_ray(_rpo_loop, {"rpo": config.model_dump(), "out_uri": out_uri, "sft_model": sft_model}, config, out_uri, desc)
    summary = storage.read_json(storage.join(out_uri, MARKER))
    summary.update(wall_s=round(time.perf_counter() - start, 2), pairs=len(rows))
    storage.write_json(storage.join(out_uri, MARKER), summary)
    return summary
