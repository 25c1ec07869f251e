"""One storage layer for every artifact: local paths, ``file://`` and ``s3://`` URIs.

Reads and writes go through pyarrow's filesystems. S3 uses pyarrow's ``S3FileSystem`` with the standard AWS
credential chain; an S3-compatible server (MinIO, SeaweedFS, ...) is reached through ``AWS_ENDPOINT_URL``
(or ``AWS_ENDPOINT_URL_S3``), the same variable boto3 and the AWS CLI read.

Writes are atomic: a local file is written to a temporary sibling and renamed into place; an S3 object only
becomes visible once its upload completes. No reader ever sees half a file.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


class StorageError(OSError):
    """A storage operation failed; the message names the URI."""


def is_remote(uri: str) -> bool:
    """True when ``uri`` names an object store rather than the local disk."""
    return urlparse(str(uri)).scheme in ("s3", "gs", "gcs")


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local path or URI."""
    base = str(base)
    if is_remote(base) or base.startswith("file://"):
        return posixpath.join(base.rstrip("/"), *parts)
    return str(Path(base, *parts))


@lru_cache(maxsize=None)
def _s3_filesystem(endpoint: str | None, region: str | None) -> pafs.S3FileSystem:
    kwargs: dict[str, Any] = {}
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc or parsed.path
        kwargs["scheme"] = parsed.scheme or "https"
    kwargs["region"] = region or "us-east-1"
    return pafs.S3FileSystem(**kwargs)


def s3_endpoint() -> str | None:
    """The S3 endpoint override from the environment, if any."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """Return the pyarrow filesystem for ``uri`` and the path inside it."""
    uri = str(uri)
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        fs = _s3_filesystem(s3_endpoint(), os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
        return fs, f"{parsed.netloc}{parsed.path}".rstrip("/")
    if parsed.scheme in ("", "file"):
        path = parsed.path if parsed.scheme == "file" else uri
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))
    if parsed.scheme in ("gs", "gcs"):
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path
    raise StorageError(f"unsupported storage URI scheme {parsed.scheme!r} in {uri!r} (use a path, file://, or s3://)")


def exists(uri: str) -> bool:
    """True when a file or directory exists at ``uri``."""
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def list_files(uri: str, suffix: str = "") -> list[str]:
    """List the files under the directory ``uri`` (recursively), sorted, as URIs of the same form."""
    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return []
    selector = pafs.FileSelector(path, recursive=True)
    out = []
    for entry in fs.get_file_info(selector):
        if entry.type == pafs.FileType.File and entry.path.endswith(suffix):
            # bucket keys are not paths of this machine: posixpath.relpath would consult (and need) the working dir
            rel = entry.path[len(path.rstrip("/")) + 1:] if is_remote(uri) else os.path.relpath(entry.path, path)
            out.append(join(uri, rel))
    return sorted(out)


def read_bytes(uri: str) -> bytes:
    """Read a whole file."""
    fs, path = filesystem(uri)
    try:
        with fs.open_input_stream(path, compression=None) as f:
            return f.read()
    except FileNotFoundError as e:
        raise StorageError(f"no such file: {uri}") from e
    except OSError as e:
        raise StorageError(f"cannot read {uri}: {e}") from e


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole file atomically (temp file + rename locally; a single completed upload on S3)."""
    fs, path = filesystem(uri)
    try:
        if isinstance(fs, pafs.LocalFileSystem):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp-{uuid.uuid4().hex}"
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            with fs.open_output_stream(path, compression=None) as f:
                f.write(data)
    except OSError as e:
        raise StorageError(f"cannot write {uri}: {e}") from e


def read_text(uri: str) -> str:
    """Read a UTF-8 text file."""
    return read_bytes(uri).decode("utf-8")


def write_text(uri: str, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    write_bytes(uri, text.encode("utf-8"))


def read_json(uri: str) -> Any:
    """Read a JSON file."""
    try:
        return json.loads(read_text(uri))
    except json.JSONDecodeError as e:
        raise StorageError(f"{uri}: invalid JSON at line {e.lineno}: {e.msg}") from e


def write_json(uri: str, obj: Any) -> None:
    """Write an object as indented JSON atomically."""
    write_text(uri, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_table(uri: str, table: pa.Table) -> None:
    """Write an Arrow table as one Parquet file, atomically."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    write_bytes(uri, buf.getvalue())


def read_table(uri: str) -> pa.Table:
    """Read a Parquet file, or every Parquet file under a directory, as one Arrow table."""
    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise StorageError(f"no such file or directory: {uri}")
    try:
        return pq.read_table(path, filesystem=fs)
    except (OSError, pa.ArrowInvalid) as e:
        raise StorageError(f"cannot read Parquet {uri}: {e}") from e


def delete(uri: str) -> None:
    """Delete a file or a directory tree if it exists."""
    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif info.type == pafs.FileType.File:
        fs.delete_file(path)


def copy_tree(src: str, dst: str) -> list[str]:
    """Copy every file under ``src`` to ``dst`` (any scheme to any scheme); returns the written URIs."""
    written = []
    fs, src_path = filesystem(src)
    if fs.get_file_info(src_path).type == pafs.FileType.File:
        write_bytes(dst, read_bytes(src))
        return [dst]
    for f in list_files(src):
        rel = posixpath.relpath(filesystem(f)[1], src_path)
        target = join(dst, *rel.split("/"))
        write_bytes(target, read_bytes(f))
        written.append(target)
    return written
