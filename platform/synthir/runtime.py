"""Starting or joining Ray: a local cluster by default, ``address=auto`` or ``ray://`` on a real one."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from pydantic import Field

from synthir import storage
from synthir.config import StrictModel, added_later

log = logging.getLogger(__name__)

_FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                  "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "SYNTHIR_CACHE")


class RayConfig(StrictModel):
    """How to reach Ray. ``address=None`` starts a local Ray sized by ``num_cpus``/``num_gpus``."""

    address: str | None = Field(None, description="None for local Ray, 'auto' or 'ray://host:10001' for a cluster")
    num_cpus: int | None = Field(None, ge=1)
    num_gpus: int | None = Field(None, ge=0)
    include_dashboard: bool = False
    object_store_memory_mb: int | None = Field(None, ge=64)
    # added_later: every step's RayConfig is execution-only (reset to this default in a cache key), so a new field
    # must also stay out of the key's JSON, or it would change every key made before it
    log_to_driver: bool = added_later(True, description="print Ray workers' output here; false: only in Ray's log "
                                                        "files (see ray_log_dir), with one progress bar per step here")


_state: dict[str, bool] = {"log_to_driver": True}


def logs_to_driver() -> bool:
    """Whether Ray workers' output reaches this process's terminal (the ``log_to_driver`` it was started with)."""
    return _state["log_to_driver"]


def ray_log_dir() -> str | None:
    """Where this Ray session writes its logs (workers', Ray Data's ray-data.log), or None before ``init_ray``."""
    import ray

    if not ray.is_initialized():
        return None
    node = ray._private.worker._global_node  # no public API names the session's log folder
    return node.get_logs_dir_path() if node is not None else None


def _quiet_ray_data() -> None:
    """Ray Data on this driver: one plain tqdm bar per dataset; its log lines only in ``ray-data.log``."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.use_ray_tqdm = False  # Ray's tqdm is drawn from worker output, which no longer reaches this terminal
    for handler in logging.getLogger("ray.data").handlers:  # Ray Data's own config: a file and a console handler
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.ERROR)


def submitted_job_env_vars() -> dict[str, str] | None:
    """The env vars of the runtime env this driver was submitted with (``ray job submit``), or None outside a job."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")  # set by Ray's job supervisor for the entrypoint
    if raw is None:
        return None
    return dict((json.loads(raw).get("runtime_env") or {}).get("env_vars") or {})


def init_ray(config: RayConfig | None = None) -> None:
    """Connect to Ray (once per process), quietly and with local defaults that suit a laptop or CI box."""
    import ray

    if ray.is_initialized():
        return
    config = config or RayConfig()
    if config.address is None:
        # Local clusters are single-user: token auth (on by default since Ray 2.5x) only gets in the way.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    env_vars = {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "TOKENIZERS_PARALLELISM": "false"}
    # Workers read storage with the driver's S3 settings (endpoint, credentials) unless the cluster has its own.
    env_vars.update({k: v for k, v in os.environ.items() if k in _FORWARDED_ENV})
    job_env = submitted_job_env_vars()
    if job_env is None:
        # Workers must import synthir from wherever this process does (a checkout run without installing).
        import synthir

        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(synthir.__file__)))
        env_vars["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, os.environ.get("PYTHONPATH", "")) if p)
    else:
        # A submitted job's runtime env (py_modules / working_dir, or the image) already decides how workers import
        # synthir, and Ray refuses a ray.init that repeats one of the job's env var keys: add only what it lacks.
        env_vars = {k: v for k, v in env_vars.items() if k not in job_env}
    kwargs = dict(
        address=config.address,
        include_dashboard=config.include_dashboard,
        logging_level=logging.WARNING,
        log_to_driver=config.log_to_driver,
        runtime_env={"env_vars": env_vars},
    )
    if config.address is None and job_env is None and not os.environ.get("RAY_ADDRESS"):  # start a local Ray
        kwargs.update(num_cpus=config.num_cpus, num_gpus=config.num_gpus)
        if config.object_store_memory_mb:
            kwargs["object_store_memory"] = config.object_store_memory_mb * 1024 * 1024
    ray.init(**kwargs)
    _state["log_to_driver"] = config.log_to_driver
    if not config.log_to_driver:
        _quiet_ray_data()
    log.info("Ray resources: %s", ray.cluster_resources())


def ray_storage(uri: str) -> tuple[str, Any]:
    """(storage_path, storage_filesystem) for Ray Train's ``RunConfig`` from a storage URI (local or remote)."""
    if storage.is_remote(uri):
        fs, path = storage.filesystem(uri)
        return path, fs
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    return os.path.abspath(path), None
