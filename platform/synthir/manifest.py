"""Run manifests: what went in, what came out, and how long it took, written next to a run's outputs."""

from __future__ import annotations

import hashlib
import platform as _platform
import socket
import subprocess
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel

from synthir import storage
from synthir.config import config_hash

_PACKAGES = ("synthir", "torch", "ray", "sentence-transformers", "transformers", "trl", "faiss-cpu", "pyarrow", "bm25s")


def package_versions() -> dict[str, str]:
    """Versions of the packages whose behaviour a run's numbers depend on."""
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> str | None:
    """The repository's current commit (``-dirty`` when the tree has uncommitted changes), from a checkout."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "-C", str(here), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def checksum(data: bytes) -> str:
    """sha256 of some bytes, as ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Manifest:
    """Collects a run's config, inputs, counts, metrics and timings; ``write`` stores it as manifest.json."""

    def __init__(self, kind: str, config: BaseModel, run_dir: str):
        self.run_dir = run_dir
        self.data: dict[str, Any] = {
            "kind": kind,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config_hash": config_hash(config),
            "config": config.model_dump(mode="json"),
            "versions": package_versions(),
            "git_commit": git_commit(),
            "host": {"name": socket.gethostname(), "python": _platform.python_version(), "machine": _platform.machine()},
            "inputs": {},
            "outputs": {},
            "counts": {},
            "metrics": {},
            "timings_s": {},
        }

    def input(self, name: str, uri: str, digest: str | None = None) -> None:
        """Record an input by URI (and checksum when known)."""
        self.data["inputs"][name] = {"uri": str(uri), **({"checksum": digest} if digest else {})}

    def output(self, name: str, uri: str) -> None:
        """Record an output artifact's URI."""
        self.data["outputs"][name] = str(uri)

    def count(self, name: str, value: int) -> None:
        """Record a row count."""
        self.data["counts"][name] = int(value)

    def metrics(self, values: dict[str, float], prefix: str = "") -> None:
        """Record metrics (optionally prefixed, e.g. by stage)."""
        for k, v in values.items():
            self.data["metrics"][f"{prefix}{k}"] = float(v)

    @contextmanager
    def timer(self, name: str) -> Iterator[None]:
        """Time a block into ``timings_s[name]``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.data["timings_s"][name] = round(time.perf_counter() - start, 3)

    def write(self) -> str:
        """Write manifest.json into the run directory and return its URI."""
        uri = storage.join(self.run_dir, "manifest.json")
        storage.write_json(uri, self.data)
        return uri
