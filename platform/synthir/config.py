"""Typed configuration: YAML files and ``--set a.b=c`` overrides validated by pydantic models.

Every config model forbids unknown keys, so a typo fails with the key's full dotted name instead of being
silently ignored. ``config_hash`` is a stable digest of the validated config, recorded in every run and used
as the cache key of a step's output. Fields declared with ``execution_only`` (concurrency, timeouts, actor and
worker counts, where storage lives, how Ray is reached) say how a step runs, not what it computes: the hash sees
them at their defaults, so changing one reuses every existing output (and keys made before the field was marked
stay the same).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from synthir import storage


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and the key."""


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


M = TypeVar("M", bound=BaseModel)


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``a.b=c`` into (["a", "b"], value), the value parsed as YAML (``3`` -> int, ``[1,2]`` -> list)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key.path=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides to a nested dict (in place) and return it."""
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key {key!r}")
        else:
            lines.append(f"{source}: {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def validate(model: type[M], data: dict[str, Any], source: str = "<config>") -> M:
    """Validate a dict as ``model``, raising ConfigError that names every bad key."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None


def load_config(model: type[M], path: str | None = None, overrides: list[str] | None = None) -> M:
    """Load a YAML config (local path or URI) into ``model``, applying ``--set`` overrides on top."""
    data: dict[str, Any] = {}
    source = path or "<defaults>"
    if path:
        try:
            loaded = yaml.safe_load(storage.read_text(path))
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from None
        except storage.StorageError as e:
            raise ConfigError(str(e)) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
        data = loaded
    data = apply_overrides(data, list(overrides or []))
    if overrides:
        source = f"{source} (with --set {' '.join(overrides)})"
    return validate(model, data, source)


def execution_only(default: Any = ..., **kwargs: Any) -> Any:
    """A config field that changes how a step runs, never its output: kept out of ``config_hash`` (cache keys)."""
    return Field(default, json_schema_extra={"execution_only": True}, **kwargs)


def added_later(default: Any = ..., **kwargs: Any) -> Any:
    """A content field added after runs existed: out of cache keys while at its default, so their folders stay found."""
    return Field(default, json_schema_extra={"added_later": True}, **kwargs)


def content_view(config: M) -> M:
    """A copy of ``config`` with every execution-only field (in any nested section) reset to its default."""
    updates: dict[str, Any] = {}
    for name, field in type(config).model_fields.items():
        value = getattr(config, name)
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("execution_only"):
            updates[name] = field.get_default(call_default_factory=True)
        elif isinstance(value, BaseModel):
            updates[name] = content_view(value)
    return config.model_copy(update=updates)


def content_dump(config: BaseModel) -> dict[str, Any]:
    """What ``config`` computes, as JSON data: its content view, less the added-later fields at their default."""

    def drop(model: BaseModel, data: dict[str, Any]) -> dict[str, Any]:
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            if extra.get("added_later") and value == field.get_default(call_default_factory=True):
                data.pop(name, None)
            elif isinstance(value, BaseModel) and isinstance(data.get(name), dict):
                drop(value, data[name])
        return data

    view = content_view(config)
    return drop(view, view.model_dump(mode="json"))


def config_hash(config: BaseModel, length: int = 12) -> str:
    """A stable short digest of what a config computes (execution-only fields, key order and formatting do not matter)."""
    canonical = json.dumps(content_dump(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:length]


def dump_yaml(config: BaseModel) -> str:
    """The config as YAML, as it was validated (defaults filled in)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
