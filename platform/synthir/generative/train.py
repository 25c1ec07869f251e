"""Decoder SFT on Ray Train: TRL's ``SFTTrainer`` inside a ``TorchTrainer`` worker group.

The driver tokenises the SFT stream (``synthir.generative.sft_data``) and writes it, with the tokenizer (atomic
IDs added), to ``<out>/examples.parquet`` and ``<out>/tokenizer``. Each worker loads the base model, resizes its
embeddings to the tokenizer, and runs ``SFTTrainer`` on the pre-tokenised stream: loss on every token
(``completion_only_loss=False``: Wen et al. train on input and output), read in order
(``train_sampling_strategy="sequential"``: the stream's order is the Context2ID / Query2ID mixing), optionally
packed into ``max_length`` blocks in that order (TRL's ``wrapped`` packing). Ray sets up the process group (gloo
on CPU, NCCL on GPU); checkpoints, resume, FailureConfig and the ``_SUCCESS.json`` marker work as in
``synthir.dense.train``. The published model folder holds the model, the tokenizer, and the identifier trie.

GPU production (``configs/genret-*-mistral.yaml``): Mistral-7B-Instruct-v0.3 (semantic IDs) or Mistral-7B-v0.3
(atomic), bf16, DeepSpeed ZeRO-3, the paper's lr 2e-5, warm-up 0.1, 2 epochs, global batch 256, max length 700.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from synthir import storage
from synthir.config import StrictModel
from synthir.dense.encoder import local_model_path
from synthir.train_loop import MARKER, WorkerGroupConfig, fit_on_ray, is_trained

BUNDLED_DECODER = "bundled:smollm2-135m-instruct"


class LoraOptions(StrictModel):
    """LoRA adapters (peft) instead of full fine-tuning; merged into the model when it is published."""

    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    train_embeddings: bool = Field(False, description="also train embed_tokens and lm_head in full (atomic IDs need it)")


class DecoderTrainConfig(WorkerGroupConfig):
    """One decoder training run (paper SFT: lr 2e-5, warm-up 0.1, 2 epochs, batch 256, bf16, max length 700)."""

    base_model: str = Field(BUNDLED_DECODER, description="bundled:<name>, a local Hugging Face folder or a hub id")
    epochs: float = Field(2.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (overrides epochs)")
    batch_size: int = Field(8, ge=1, description="sequences (or packed blocks) per device and step")
    gradient_accumulation: int = Field(1, ge=1, description="global batch = batch_size x accumulation x workers")
    lr: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    scheduler: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    max_length: int = Field(700, ge=16, description="longest sequence (packed block) in tokens")
    packing: bool = Field(True, description="pack the stream into max_length blocks, in order (TRL 'wrapped')")
    gradient_checkpointing: bool = False
    lora: LoraOptions | None = Field(None, description="train LoRA adapters (peft), merged at the end; None: full fine-tuning")

    @model_validator(mode="after")
    def _lora_without_zero3(self) -> "DecoderTrainConfig":
        stage = ((self.deepspeed or {}).get("zero_optimization") or {}).get("stage")
        if self.lora is not None and stage == 3:
            raise ValueError("lora with DeepSpeed ZeRO-3 is not supported here (merging needs the gathered weights): "
                             "use ZeRO-2, or full fine-tuning with ZeRO-3")
        return self


def load_tokenizer(base_model: str) -> Any:
    """The base model's tokenizer (a bundled GGUF, a local or s3:// folder, a hub id), with a pad token (EOS if none)."""
    from transformers import AutoTokenizer

    from synthir.llm.hf_engine import BUNDLED_PREFIX, resolve_model

    base_model = local_model_path(base_model)
    if base_model.startswith(BUNDLED_PREFIX) or os.path.exists(base_model):
        folder, gguf = resolve_model(base_model)
        tokenizer = AutoTokenizer.from_pretrained(folder, **({"gguf_file": gguf} if gguf else {}))
    else:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_decoder(base_model: str, dtype: str = "fp32") -> Any:
    """The base causal LM in ``dtype`` (a bundled GGUF is dequantised to it)."""
    import torch
    from transformers import AutoModelForCausalLM

    from synthir.llm.hf_engine import BUNDLED_PREFIX, resolve_model

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    base_model = local_model_path(base_model)
    if base_model.startswith(BUNDLED_PREFIX) or os.path.exists(base_model):
        folder, gguf = resolve_model(base_model)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype, **({"gguf_file": gguf} if gguf else {}))
        if gguf:
            # transformers dequantizes GGUF weights into plain tensors but still marks the model quantized, and the
            # Trainer then refuses full fine-tuning: the weights are ordinary ones, so drop the marks (saved models too)
            model.hf_quantizer, model.is_quantized = None, False
            model.config.quantization_config = None
            del model.config.quantization_config
        return model
    return AutoModelForCausalLM.from_pretrained(base_model, dtype=torch_dtype)


def sft_args(config: DecoderTrainConfig, output_dir: str, rank: int) -> Any:
    """TRL's ``SFTConfig`` for ``config``: loss on every token, the stream read in order, wrapped packing."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=output_dir,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type=config.scheduler,
        bf16=config.precision == "bf16",
        fp16=config.precision == "fp16",
        use_cpu=not config.use_gpu,
        deepspeed=config.deepspeed,
        gradient_checkpointing=config.gradient_checkpointing,
        max_length=config.max_length,
        packing=config.packing,
        packing_strategy="wrapped",
        completion_only_loss=False,
        train_sampling_strategy="sequential",
        save_strategy="steps" if config.save_steps else "epoch",
        save_steps=config.save_steps or 500,
        save_total_limit=1,
        logging_steps=1,
        report_to="none",
        seed=config.seed,
        disable_tqdm=rank != 0,
    )


def _train_loop(loop_config: dict) -> None:
    """Ray Train worker: TRL's SFTTrainer on the pre-tokenised stream, resuming from Ray's checkpoint."""
    if os.path.isdir(loop_config["cwd"]):
        os.chdir(loop_config["cwd"])  # relative local paths (storage, model folders) mean what they mean to the caller
    config = DecoderTrainConfig.model_validate(loop_config["train"])
    if config.deepspeed is not None and not config.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed's CPU accelerator (gloo), before it is imported
    import datasets
    import ray.train
    import torch
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    from synthir.generative.trie import TokenTrie
    from synthir.train_loop import FailOnce, ReportStep, StepLog, publish, train_resuming

    torch.set_num_threads(config.torch_threads or max(1, int(config.cpus_per_worker)))
    torch.manual_seed(config.seed)
    context = ray.train.get_context()
    rank = context.get_world_rank()
    out = loop_config["out_uri"]
    work = tempfile.mkdtemp(prefix="synthir-sft-")
    tokenizer_dir = os.path.join(work, "tokenizer")
    storage.copy_tree(storage.join(out, "tokenizer"), tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = load_decoder(config.base_model, config.precision if config.use_gpu else "fp32")
    if model.get_input_embeddings().weight.shape[0] != len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))  # atomic IDs: one new row per document
    model.config.pad_token_id = tokenizer.pad_token_id
    table = storage.read_table(storage.join(out, "examples.parquet")).select(["input_ids"])
    train_dataset = datasets.Dataset(datasets.table.InMemoryTable(table))
    resume = ray.train.get_checkpoint()
    step_log = StepLog()
    peft_config = None
    if config.lora is not None:
        from peft import LoraConfig

        peft_config = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                                 target_modules=config.lora.target_modules, task_type="CAUSAL_LM",
                                 modules_to_save=["embed_tokens", "lm_head"] if config.lora.train_embeddings else None)
    trainer = SFTTrainer(model=model, args=sft_args(config, os.path.join(work, "hf"), rank), train_dataset=train_dataset,
                         processing_class=tokenizer, peft_config=peft_config,
                         callbacks=[RayTrainReportCallback(), step_log, FailOnce(rank, resume is not None, config.fail_at_step),
                                    ReportStep(rank, loop_config.get("progress"))])
    trainer = prepare_trainer(trainer)
    output, resumed_from = train_resuming(trainer, resume, work)
    if rank == 0:
        final = os.path.join(work, "final")
        if config.lora is not None:  # one plain model folder: retrieval and RPO need no peft
            trainer.model.merge_and_unload().save_pretrained(final)
        else:
            trainer.save_model(final)
        tokenizer.save_pretrained(final)
        TokenTrie.from_json(storage.read_json(storage.join(out, "trie.json"))).save(final)
        summary = {"global_step": output.global_step, "resumed_from_step": resumed_from,
                   "train_loss": output.training_loss, "world_size": context.get_world_size(),
                   "train_runtime_s": output.metrics.get("train_runtime"),
                   "tokens_per_s": round(loop_config["tokens"] * config.epochs / output.metrics["train_runtime"], 1)
                   if output.metrics.get("train_runtime") and not config.max_steps else None,
                   "deepspeed_zero_stage": (trainer.model_wrapped.zero_optimization_stage()
                                            if trainer.is_deepspeed_enabled else None)}
        publish(final, out, step_log.rows, summary)
    ray.train.report({"done": 1, "global_step": output.global_step})
    shutil.rmtree(work, ignore_errors=True)


def train_decoder(examples: list[dict], tokenizer: Any, trie: Any, config: DecoderTrainConfig, out_uri: str,
                  desc: str = "SFT") -> dict:
    """Train the decoder on the token stream ``examples`` with Ray Train; the model lands in ``<out_uri>/model``."""
    if not examples:
        raise ValueError("no training examples")
    if is_trained(out_uri):
        return storage.read_json(storage.join(out_uri, MARKER))
    start = time.perf_counter()
    table = pa.table({"input_ids": pa.array([e["input_ids"] for e in examples], type=pa.list_(pa.int32())),
                      "kind": [e["kind"] for e in examples]})
    storage.write_table(storage.join(out_uri, "examples.parquet"), table)
    local = tempfile.mkdtemp(prefix="synthir-tok-")
    tokenizer.save_pretrained(local)
    storage.delete(storage.join(out_uri, "tokenizer"))
    storage.copy_tree(local, storage.join(out_uri, "tokenizer"))
    shutil.rmtree(local, ignore_errors=True)
    storage.write_json(storage.join(out_uri, "trie.json"), trie.to_json())
    tokens = sum(len(e["input_ids"]) for e in examples)
    fit_on_ray(_train_loop, {"train": config.model_dump(), "out_uri": out_uri, "tokens": tokens}, config, out_uri, desc)
    summary = storage.read_json(storage.join(out_uri, MARKER))
    summary.update(wall_s=round(time.perf_counter() - start, 2), examples=len(examples), tokens=tokens,
                   base_model=config.base_model)
    storage.write_json(storage.join(out_uri, MARKER), summary)
    return summary
