"""A progress bar on the driver for work that runs inside Ray workers whose output stays in Ray's log files.

Ray Data draws its own bars on the driver; Ray Train does not (a worker's tqdm bar only reaches the terminal with
``log_to_driver``, among every other line the workers print). So, written here: the rank-0 worker reports its
step to a tiny actor, and a driver thread polls it into one tqdm bar.

Example::

    with driver_progress("stage 1 training") as counter:    # counter is None when workers print to the driver
        trainer = TorchTrainer(loop, train_loop_config={"progress": counter, ...})
        trainer.fit()
    # in the worker: counter.update.remote(state.global_step, state.max_steps)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from synthir.runtime import logs_to_driver


class StepCounter:
    """Ray actor: the latest ``(step, total)`` a worker reported."""

    def __init__(self) -> None:
        self.step, self.total = 0, 0

    def update(self, step: int, total: int) -> None:
        """Record the worker's step and the run's total steps."""
        self.step, self.total = int(step), int(total)

    def get(self) -> tuple[int, int]:
        """The latest ``(step, total)``."""
        return self.step, self.total


@contextlib.contextmanager
def driver_progress(desc: str, poll_s: float = 1.0) -> Iterator[Any]:
    """Draw a driver-side bar for the block, fed by the yielded ``StepCounter`` handle (None: workers print here)."""
    if logs_to_driver():
        yield None
        return
    import ray
    from tqdm.auto import tqdm

    counter = ray.remote(num_cpus=0)(StepCounter).remote()
    stop = threading.Event()

    def poll() -> None:
        with tqdm(desc=desc, unit="step", dynamic_ncols=True) as bar:
            while True:
                stopping = stop.wait(poll_s)
                step, total = ray.get(counter.get.remote())
                if total and bar.total != total:
                    bar.total = total
                bar.update(step - bar.n)
                if stopping:
                    return

    thread = threading.Thread(target=poll, name=f"progress:{desc}", daemon=True)
    thread.start()
    try:
        yield counter
    finally:
        stop.set()
        thread.join(timeout=10)
        ray.kill(counter)
