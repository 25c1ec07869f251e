"""What every training loop inside a Ray Train worker shares: callbacks, resuming from Ray's checkpoint, publishing.

The loops (``synthir.dense.train``, ``synthir.generative.train``) each build their own transformers ``Trainer``;
they resume and publish the same way: a checkpoint reported by ``RayTrainReportCallback`` is copied locally and
handed to ``Trainer.train(resume_from_checkpoint=...)``, and rank 0 writes the final model to ``<out>/model``, the
step log, and a ``_SUCCESS.json`` marker last, so a reader never takes half a model.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any, Literal

from pydantic import Field, model_validator
from transformers import TrainerCallback

from synthir import storage
from synthir.config import StrictModel, execution_only

MARKER = "_SUCCESS.json"


class WorkerGroupConfig(StrictModel):
    """How a training run is spread over Ray Train workers, its precision, and its checkpoint and failure handling."""

    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    deepspeed: dict[str, Any] | None = Field(None, description="a DeepSpeed config (ZeRO-2, ZeRO-3); 'auto' values allowed")
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = execution_only(1.0, gt=0)
    torch_threads: int | None = execution_only(None, ge=1, description="CPU threads per worker; default: cpus_per_worker")
    save_steps: int = execution_only(0, ge=0, description="checkpoint every N steps; 0: once per epoch")
    max_failures: int = execution_only(1, ge=-1, description="worker failures Ray Train recovers from (-1: unlimited)")
    seed: int = 0
    fail_at_step: int | None = execution_only(None, ge=1, description="testing: kill worker 0 at this step on the first attempt")

    @model_validator(mode="after")
    def _fp16_needs_gpu(self) -> "WorkerGroupConfig":
        if self.precision == "fp16" and not self.use_gpu:
            raise ValueError("precision fp16 needs use_gpu: true (use bf16 or fp32 on CPU)")
        return self


class FailOnce(TrainerCallback):
    """Testing hook: worker 0 dies (as if killed) at ``fail_at_step`` unless this attempt resumed.

    It first waits ``grace_s``: Ray Train's controller collects a worker's reports when it polls (every 2 s), so a
    worker that dies right after reporting a checkpoint may take that checkpoint with it (a real crash then resumes
    from the one before). The wait makes the test's expected resume step certain on a loaded machine.
    """

    grace_s = 10.0

    def __init__(self, rank: int, resumed: bool, fail_at_step: int | None):
        self.rank, self.resumed, self.fail_at_step = rank, resumed, fail_at_step

    def on_step_end(self, args, state, control, **kwargs):
        """Exit the process at the chosen step on the first attempt."""
        if self.rank == 0 and not self.resumed and state.global_step == self.fail_at_step:
            time.sleep(self.grace_s)
            os._exit(1)


class ReportStep(TrainerCallback):
    """Rank 0 tells the driver's progress bar (``synthir.progress``) where training stands."""

    def __init__(self, rank: int, progress: Any):
        self.rank, self.progress = rank, progress

    def on_step_end(self, args, state, control, **kwargs):
        """Send (step, total) to the driver's counter actor."""
        if self.rank == 0 and self.progress is not None:
            self.progress.update.remote(state.global_step, state.max_steps)


class StepLog(TrainerCallback):
    """Keep every logged step (loss, lr) for the run's ``train_log.jsonl``."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Record the step's logs."""
        self.rows.append({"step": state.global_step, **(logs or {})})


def train_resuming(trainer: Any, resume: Any, work: str) -> tuple[Any, int]:
    """Run ``trainer.train()``, from Ray Train's checkpoint ``resume`` when there is one: (output, step resumed from)."""
    from ray.train.huggingface.transformers import RayTrainReportCallback

    if resume is None:
        return trainer.train(), 0
    with resume.as_directory() as ckpt:
        local = os.path.join(work, "resume")
        shutil.copytree(os.path.join(ckpt, RayTrainReportCallback.CHECKPOINT_NAME), local)
    with open(os.path.join(local, "trainer_state.json")) as f:
        resumed_from = json.load(f)["global_step"]
    return trainer.train(resume_from_checkpoint=local), resumed_from


def publish(final_dir: str, out_uri: str, log_rows: list[dict], summary: dict) -> None:
    """Copy a saved model to ``<out_uri>/model`` with its step log, then write the success marker (last)."""
    storage.delete(storage.join(out_uri, "model"))
    storage.copy_tree(final_dir, storage.join(out_uri, "model"))
    storage.write_bytes(storage.join(out_uri, "train_log.jsonl"), "".join(json.dumps(r) + "\n" for r in log_rows).encode())
    storage.write_json(storage.join(out_uri, MARKER), summary)


def fit_on_ray(loop: Any, loop_config: dict, config: Any, out_uri: str, desc: str) -> None:
    """Run ``loop`` on a Ray Train worker group sized by ``config`` (num_workers, use_gpu, cpus_per_worker, max_failures).

    Ray Train's own checkpoints live under ``<out_uri>/ray``, so rerunning with the same ``out_uri`` resumes; a
    driver-side bar named ``desc`` follows rank 0's steps (``loop_config["progress"]``).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from synthir.progress import driver_progress
    from synthir.runtime import ray_storage

    path, fs = ray_storage(storage.join(out_uri, "ray"))
    with driver_progress(desc) as progress:
        TorchTrainer(
            loop,
            train_loop_config={**loop_config, "progress": progress, "cwd": os.getcwd()},
            scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu,
                                         resources_per_worker={"CPU": config.cpus_per_worker}),
            run_config=RunConfig(name="train", storage_path=path, storage_filesystem=fs,
                                 failure_config=FailureConfig(max_failures=config.max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=1)),
        ).fit()


def is_trained(out_uri: str) -> bool:
    """True when ``out_uri`` holds a finished model (its success marker is written last)."""
    return storage.exists(storage.join(out_uri, MARKER))
