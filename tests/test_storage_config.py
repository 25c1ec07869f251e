"""Storage (atomic writes, URIs, S3 on a real server) and typed configs."""

import os

import pyarrow as pa
import pytest

from synthir import storage
from synthir.config import ConfigError, StrictModel, config_hash, load_config
from synthir.eval.run import EvalConfig


def test_local_roundtrip_and_atomic_write(tmp_path, monkeypatch):
    uri = str(tmp_path / "a" / "b.json")
    storage.write_json(uri, {"x": 1})
    assert storage.read_json(uri) == {"x": 1}
    # A failing write leaves the old file intact and no temp file behind.
    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(storage.StorageError, match="b.json"):
        storage.write_json(uri, {"x": 2})
    monkeypatch.undo()
    assert storage.read_json(uri) == {"x": 1}
    assert os.listdir(tmp_path / "a") == ["b.json"]


def test_table_roundtrip_and_listing(tmp_path):
    t = pa.table({"id": ["1", "2"], "v": [1.0, 2.0]})
    storage.write_table(str(tmp_path / "t" / "part-0.parquet"), t)
    storage.write_table(f"file://{tmp_path}/t/part-1.parquet", t)
    assert storage.read_table(str(tmp_path / "t")).num_rows == 4
    assert [f.rsplit("/", 1)[-1] for f in storage.list_files(str(tmp_path / "t"))] == ["part-0.parquet", "part-1.parquet"]
    with pytest.raises(storage.StorageError, match="nope"):
        storage.read_bytes(str(tmp_path / "nope"))


def test_unsupported_scheme():
    with pytest.raises(storage.StorageError, match="ftp"):
        storage.filesystem("ftp://host/x")


def test_s3_roundtrip_on_real_server(s3_server):
    uri = "s3://synthir/tests/x/hello.txt"
    storage.write_text(uri, "hello")
    assert storage.read_text(uri) == "hello"
    assert storage.exists(uri)
    assert storage.list_files("s3://synthir/tests/x") == [uri]
    body = s3_server["client"].get_object(Bucket="synthir", Key="tests/x/hello.txt")["Body"].read()
    assert body == b"hello"


class _Inner(StrictModel):
    size: int = 3


class _Outer(StrictModel):
    name: str = "a"
    inner: _Inner = _Inner()


def test_config_yaml_overrides_and_unknown_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: b\ninner:\n  size: 5\n")
    cfg = load_config(_Outer, str(path), ["inner.size=7"])
    assert (cfg.name, cfg.inner.size) == ("b", 7)
    path.write_text("name: b\ninner:\n  sise: 5\n")
    with pytest.raises(ConfigError, match=r"unknown key 'inner\.sise'") as e:
        load_config(_Outer, str(path))
    assert str(path) in str(e.value)
    with pytest.raises(ConfigError, match="inner.size"):
        load_config(_Outer, None, ["inner.size=big"])
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(_Outer, None, ["inner.size"])


def test_config_hash_is_stable_and_sensitive():
    a = EvalConfig(retriever="bm25")
    b = load_config(EvalConfig, None, ["retriever=bm25"])
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(EvalConfig(retriever="bm25", top_k=10))
