"""Encoder training on Ray Train: the sentence-transformers Trainer inside a ``TorchTrainer`` worker group.

Each Ray Train worker runs ``SentenceTransformerTrainer`` (AdamW, warm-up + cosine schedule, bf16/fp16, an
optional DeepSpeed ZeRO config) on its shard of the batches; Ray sets up the process group (gloo on CPU, NCCL on
GPU). Checkpoints are the Trainer's own (model, optimizer, scheduler, RNG state), copied to Ray Train storage by
``RayTrainReportCallback``; a worker that dies is restarted by ``FailureConfig`` and resumes from the last one,
and rerunning a killed job with the same storage and name resumes the same way. The finished model is written
by rank 0 to ``<out>/model`` with a ``_SUCCESS.json`` marker last, so a reader never takes half a model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Literal

import pyarrow as pa
from pydantic import Field, model_validator

from synthir import storage
from synthir.config import added_later
from synthir.dense.encoder import EncoderConfig
from synthir.dense.groups import LAYOUTS
from synthir.dense.losses import DistillationMode
from synthir.train_loop import MARKER, WorkerGroupConfig, fit_on_ray, is_trained

LossName = Literal["distill", "infonce", "pl", "bt"]


class TrainConfig(WorkerGroupConfig):
    """One encoder training run (paper settings: AdamW lr 2e-5, weight decay 0.01, warm-up, cosine, tau 0.05)."""

    loss: LossName = Field("distill", description="distill (stage 1), infonce (gold-only), pl / bt (stage 2)")
    distill_mode: DistillationMode = Field("paper", description="paper | per_positive | gold_plus_synthetic")
    synthetic_weight: float = Field(1.0, ge=0, description="weight of the multi-positive term in gold_plus_synthetic")
    temperature: float = Field(0.05, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (overrides epochs)")
    batch_size: int = Field(32, ge=2, description="groups (distinct queries) per batch and worker")
    mini_batch_size: int | None = added_later(None, ge=1, description="stage 1 (distill): GradCache, embedding this "
                                              "many rows per forward pass, so batch_size is bounded by time, not memory")
    lr: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    scheduler: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    max_seq_length: int | None = Field(None, ge=8, description="training-time truncation; default: the encoder's")

    @model_validator(mode="after")
    def _grad_cache_is_for_distill(self) -> "TrainConfig":
        if self.mini_batch_size and self.loss != "distill":
            raise ValueError(f"mini_batch_size (GradCache) is for the stage-1 distill loss, not loss {self.loss!r}")
        return self


def build_loss(model, config: TrainConfig, layout: str | None = None):
    """The loss module for ``config`` (and, for stage 1, the group layout of ``synthir.dense.groups``)."""
    from synthir.dense import losses

    if config.loss == "infonce":
        return losses.InBatchInfoNCELoss(model, temperature=config.temperature)
    if config.loss == "pl":
        return losses.PartialPlackettLuceLoss(model, temperature=config.temperature)
    if config.loss == "bt":
        return losses.BradleyTerryLoss(model, temperature=config.temperature)
    _, positives, relabel = LAYOUTS[layout or "full"]
    kwargs = dict(temperature=config.temperature, mode=config.distill_mode, positive_columns=positives,
                  relabel_column=relabel if relabel is not None else positives[-1], synthetic_weight=config.synthetic_weight)
    if config.mini_batch_size:
        return losses.CachedMultiPositiveDistillationLoss(model, mini_batch_size=config.mini_batch_size, **kwargs)
    return losses.MultiPositiveDistillationLoss(model, **kwargs)


def _train_loop(loop_config: dict) -> None:
    """Ray Train worker: the sentence-transformers Trainer on this worker's shard, resuming from Ray's checkpoint."""
    if os.path.isdir(loop_config["cwd"]):
        # Ray Train starts each worker in a run directory of its own; relative local paths (a `storage: ./runs`
        # config, a model folder) must mean what they mean to the caller.
        os.chdir(loop_config["cwd"])
    config = TrainConfig.model_validate(loop_config["train"])
    if config.deepspeed is not None and not config.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed's CPU accelerator (gloo), before it is imported
    import datasets
    import ray.train
    import torch
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    from synthir.dense.encoder import load_encoder
    from synthir.train_loop import FailOnce, ReportStep, StepLog, publish, train_resuming

    encoder = EncoderConfig.model_validate(loop_config["encoder"])
    torch.set_num_threads(config.torch_threads or max(1, int(config.cpus_per_worker)))
    context = ray.train.get_context()
    rank = context.get_world_rank()
    model = load_encoder(encoder)
    if config.max_seq_length:
        model.max_seq_length = config.max_seq_length
    table = storage.read_table(loop_config["groups_uri"]).drop_columns(["query_id"])
    train_dataset = datasets.Dataset(datasets.table.InMemoryTable(table))
    loss = build_loss(model, config, loop_config.get("layout"))
    resume = ray.train.get_checkpoint()
    progress = loop_config.get("progress")

    work = tempfile.mkdtemp(prefix="synthir-train-")
    args = SentenceTransformerTrainingArguments(
        output_dir=os.path.join(work, "hf"),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        lr_scheduler_type=config.scheduler,
        bf16=config.precision == "bf16",
        fp16=config.precision == "fp16",
        use_cpu=not config.use_gpu,
        deepspeed=config.deepspeed,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        dataloader_drop_last=True,
        save_strategy="steps" if config.save_steps else "epoch",
        save_steps=config.save_steps or 500,
        save_total_limit=1,
        logging_steps=1,
        report_to="none",
        seed=config.seed,
        disable_tqdm=rank != 0,
        ddp_find_unused_parameters=True,  # BERT-style pooler weights get no gradient under mean pooling
    )
    step_log = StepLog()
    callbacks = [RayTrainReportCallback(), step_log, FailOnce(rank, resume is not None, config.fail_at_step),
                 ReportStep(rank, progress)]
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_dataset, loss=loss,
                                         callbacks=callbacks)
    trainer = prepare_trainer(trainer)
    output, resumed_from = train_resuming(trainer, resume, work)
    if rank == 0:
        final = os.path.join(work, "final")
        trainer.save_model(final)
        summary = {"global_step": output.global_step, "resumed_from_step": resumed_from,
                   "train_loss": output.training_loss, "world_size": context.get_world_size(),
                   "examples_per_s": output.metrics.get("train_samples_per_second"),
                   "train_runtime_s": output.metrics.get("train_runtime"),
                   "deepspeed_zero_stage": (trainer.model_wrapped.zero_optimization_stage()
                                            if trainer.is_deepspeed_enabled else None)}
        publish(final, loop_config["out_uri"], step_log.rows, summary)
    ray.train.report({"done": 1, "global_step": output.global_step})
    shutil.rmtree(work, ignore_errors=True)


def train_encoder(groups: pa.Table, encoder: EncoderConfig, config: TrainConfig, out_uri: str,
                  layout: str | None = None, desc: str = "training") -> dict:
    """Train ``encoder`` on ``groups`` with Ray Train; the model lands in ``<out_uri>/model``. Returns the summary.

    ``desc`` names the driver-side progress bar shown when Ray workers' output stays in Ray's log files.
    """
    if config.loss == "distill" and (layout or "full") not in LAYOUTS:
        raise ValueError(f"unknown group layout {layout!r}; one of {sorted(LAYOUTS)}")
    per_step = config.batch_size * config.num_workers
    if groups.num_rows < per_step:
        raise ValueError(f"{groups.num_rows} training groups cannot fill one batch of {config.batch_size} x "
                         f"{config.num_workers} workers")
    if is_trained(out_uri):
        return storage.read_json(storage.join(out_uri, MARKER))
    start = time.perf_counter()
    groups_uri = storage.join(out_uri, "groups.parquet")
    storage.write_table(groups_uri, groups)
    fit_on_ray(_train_loop, {"train": config.model_dump(), "encoder": encoder.model_dump(), "groups_uri": groups_uri,
                             "out_uri": out_uri, "layout": layout}, config, out_uri, desc)
    summary = storage.read_json(storage.join(out_uri, MARKER))
    summary["wall_s"] = round(time.perf_counter() - start, 2)
    summary["encoder"] = encoder.model_dump(mode="json")  # prefixes, pooling, lengths: how to use the model (serving)
    storage.write_json(storage.join(out_uri, MARKER), summary)
    return summary
