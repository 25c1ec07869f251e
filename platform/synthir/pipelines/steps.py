"""What every pipeline shares: the cache key of a step's outputs, and the wall time of each step."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Callable

from pydantic import BaseModel

from synthir.config import content_dump


def step_key(*parts: BaseModel | dict | str | None) -> str:
    """A short digest of the settings a step depends on (execution-only fields at their defaults)."""
    blob = json.dumps([content_dump(p) if isinstance(p, BaseModel) else p for p in parts], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


class StepTimer:
    """Runs steps and records each one's wall time in seconds under its name (``timings``)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def __call__(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, timed as ``name``."""
        start = time.perf_counter()
        out = fn(*args)
        self.timings[name] = round(time.perf_counter() - start, 2)
        return out
