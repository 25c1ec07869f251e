"""Quiet runs: workers' output stays in Ray's logs, the driver draws one bar per step (synthir.progress, runtime)."""

import logging
import time

from synthir import runtime
from synthir.progress import driver_progress


def test_driver_bar_follows_the_steps_the_worker_reports(ray_local, capsys, monkeypatch):
    import ray

    monkeypatch.setitem(runtime._state, "log_to_driver", False)
    with driver_progress("unit training", poll_s=0.05) as counter:
        assert counter is not None
        ray.get(counter.update.remote(3, 10))
        time.sleep(0.5)
        ray.get(counter.update.remote(10, 10))
    err = capsys.readouterr().err
    assert "unit training" in err and "3/10" in err and "10/10" in err
    assert _dies_within(counter, 30), "the counter actor outlived its block"


def _dies_within(actor, seconds: float) -> bool:
    """True once a call on ``actor`` fails as dead; ray.kill is asynchronous, so one call may still be answered."""
    import ray

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            ray.get(actor.get.remote(), timeout=max(0.1, deadline - time.monotonic()))
        except ray.exceptions.RayActorError:
            return True
        except ray.exceptions.GetTimeoutError:
            return False
        time.sleep(0.2)
    return False


def test_no_driver_bar_when_workers_print_to_the_driver(ray_local, monkeypatch):
    monkeypatch.setitem(runtime._state, "log_to_driver", True)
    with driver_progress("unit training") as counter:
        assert counter is None


def test_quiet_ray_data_draws_plain_bars_and_logs_only_to_its_file():
    from ray.data import DataContext

    ctx = DataContext.get_current()
    handlers = logging.getLogger("ray.data").handlers
    saved = (ctx.enable_operator_progress_bars, ctx.print_on_execution_start, ctx.use_ray_tqdm, [h.level for h in handlers])
    try:
        runtime._quiet_ray_data()
        assert (ctx.enable_operator_progress_bars, ctx.print_on_execution_start, ctx.use_ray_tqdm) == (False, False, False)
        assert ctx.enable_progress_bars  # the one bar per dataset stays
        console = [h for h in handlers if isinstance(h, logging.StreamHandler)]
        files = [h for h in handlers if not isinstance(h, logging.StreamHandler)]
        assert console and all(h.level == logging.ERROR for h in console)
        assert files and [h.level for h in files] == [saved[3][handlers.index(h)] for h in files]  # ray-data.log keeps all
    finally:
        ctx.enable_operator_progress_bars, ctx.print_on_execution_start, ctx.use_ray_tqdm = saved[:3]
        for h, level in zip(handlers, saved[3]):
            h.setLevel(level)
