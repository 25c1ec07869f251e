"""Prompt files (``prompts/*.txt``) and their rendering into OpenAI chat messages.

File format::

    # name: syntriever_relabel          (optional; must equal the file stem)
    # source: <paper>                   (required)
    # section: <appendix / section>
    # variables: question, passage      (required; must match the body's placeholders)
    # temperature: 0.0                  (required; the paper's sampling temperature)
    # max_tokens: 8                     (optional)
    # any other comment line
    ---
    <prompt body, verbatim>

Every line before the ``---`` line must be a ``#`` comment (or blank). ``# key: value`` comment lines are read
as metadata. The body is everything after the ``---`` line, minus the file's final newline.

Placeholders: ``{name}`` where ``name`` is a Python identifier, as in ``str.format``. Every other brace is
literal text (``{"a": 1}``, ``{ }``, ``}}``...), so a body may hold JSON without escaping. The only escape
is for text that would otherwise read as a placeholder: ``{{name}}`` renders as the literal ``{name}``
(what ``str.format`` would do). :attr:`PromptTemplate.format_string` gives the body with all literal braces
doubled, for callers that want ``str.format`` itself.

Rendering substitutes ``str(value)`` once; values are never re-scanned, so braces inside a question or a
passage are safe.
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

__all__ = [
    "GENRET_CONSTRAINT_EXAMPLES",
    "PromptError",
    "PromptTemplate",
    "list_prompts",
    "load_prompt",
    "parse_prompt",
]

SEPARATOR = "---"
_REQUIRED_META = ("source", "variables", "temperature")
_META_LINE = re.compile(r"^#\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.*?)\s*$")
# {{name}} (escaped literal) or {name} (placeholder); any other brace is literal text.
_TOKEN = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")

# The dataset-specific example paragraphs of Wen et al. (2025), Appendix C, for `genret_constrained_queries`
# (variable `example`). The paper uses the "left" example for both AllSides and AGNews.
_NEWS_EXAMPLE = (
    'For example, if the source of the article is "New York Times", you can generate questions that '
    'specifically ask for certain information from "New York Times". You should generate questions with '
    "different metadata."
)
_POLARITY_EXAMPLE = (
    'For example, if the source of the political polarity is "left", you can generate questions that '
    'specifically ask for certain information from "left-wing" source.'
)
GENRET_CONSTRAINT_EXAMPLES: dict[str, str] = {
    "multihop_rag": _NEWS_EXAMPLE,
    "news": _NEWS_EXAMPLE,
    "allsides": _POLARITY_EXAMPLE,
    "agnews": _POLARITY_EXAMPLE,
}


class PromptError(ValueError):
    """A prompt file is malformed, or a render got a missing, unknown or invalid variable."""


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt file: its body with ``{variable}`` placeholders and its header metadata."""

    name: str
    source: str
    body: str
    variables: tuple[str, ...]
    temperature: float
    section: str = ""
    max_tokens: int | None = None
    path: str | None = None
    meta: Mapping[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        """The prompt file's path (or name) for error messages."""
        return self.path or f"<prompt {self.name}>"

    @property
    def format_string(self) -> str:
        """The body as a ``str.format`` string (literal braces doubled, placeholders kept)."""
        out, pos = [], 0
        for m in _TOKEN.finditer(self.body):
            out.append(_double(self.body[pos : m.start()]))
            out.append("{{%s}}" % m.group(1) if m.group(1) else "{%s}" % m.group(2))
            pos = m.end()
        out.append(_double(self.body[pos:]))
        return "".join(out)

    @property
    def sampling(self) -> dict[str, Any]:
        """Sampling parameters from the header: temperature and, if given, max_tokens."""
        params: dict[str, Any] = {"temperature": self.temperature}
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        return params

    def render(self, **variables: Any) -> str:
        """Fill the placeholders; raise PromptError naming the file on a missing/unknown/None variable."""
        missing = [v for v in self.variables if v not in variables]
        if missing:
            raise PromptError(
                f"{self.where}: missing variable(s) {', '.join(map(repr, missing))} "
                f"(prompt {self.name!r} needs {', '.join(self.variables) or 'none'})"
            )
        unknown = sorted(set(variables) - set(self.variables))
        if unknown:
            raise PromptError(
                f"{self.where}: unknown variable(s) {', '.join(map(repr, unknown))} "
                f"(prompt {self.name!r} takes {', '.join(self.variables) or 'none'})"
            )
        for k, v in variables.items():
            if v is None:
                raise PromptError(f"{self.where}: variable {k!r} is None")

        def sub(m: re.Match[str]) -> str:
            if m.group(1):
                return "{%s}" % m.group(1)
            return str(variables[m.group(2)])

        return _TOKEN.sub(sub, self.body)

    def messages(self, **variables: Any) -> list[dict[str, str]]:
        """OpenAI chat messages as the teacher received them: a single user message, no system message."""
        return [{"role": "user", "content": self.render(**variables)}]


def _double(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _placeholders(body: str) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for m in _TOKEN.finditer(body):
        if m.group(2):
            seen.setdefault(m.group(2), None)
    return tuple(seen)


def parse_prompt(text: str, name: str, path: str | None = None) -> PromptTemplate:
    """Parse a prompt file's text (header, ``---``, body) into a PromptTemplate."""
    where = path or f"<prompt {name}>"
    lines = text.split("\n")
    try:
        sep = next(i for i, line in enumerate(lines) if line.rstrip("\r") == SEPARATOR)
    except StopIteration:
        raise PromptError(f"{where}: no '{SEPARATOR}' line between the header and the body") from None
    meta: dict[str, str] = {}
    for lineno, line in enumerate(lines[:sep], start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if not line.startswith("#"):
            raise PromptError(f"{where}:{lineno}: header lines must start with '#': {line!r}")
        m = _META_LINE.match(line)
        if m and m.group(1).lower() not in meta:
            meta[m.group(1).lower()] = m.group(2)
    for key in _REQUIRED_META:
        if key not in meta:
            raise PromptError(f"{where}: header lacks '# {key}: ...'")
    if "name" in meta and meta["name"] != name:
        raise PromptError(f"{where}: header name {meta['name']!r} differs from the file name {name!r}")

    body = "\n".join(lines[sep + 1 :])
    if body.endswith("\n"):
        body = body[:-1]
    if not body.strip():
        raise PromptError(f"{where}: empty body")

    variables = _placeholders(body)
    declared = tuple(v.strip() for v in re.split(r"[,\s]+", meta["variables"]) if v.strip())
    if set(declared) != set(variables):
        raise PromptError(
            f"{where}: header declares variables {sorted(declared)} but the body uses {sorted(variables)}"
        )
    try:
        temperature = float(meta["temperature"].split()[0])
    except (ValueError, IndexError):
        raise PromptError(f"{where}: bad temperature {meta['temperature']!r}") from None
    max_tokens = None
    if meta.get("max_tokens"):
        try:
            max_tokens = int(meta["max_tokens"].split()[0])
        except ValueError:
            raise PromptError(f"{where}: bad max_tokens {meta['max_tokens']!r}") from None
    return PromptTemplate(
        name=name,
        source=meta["source"],
        body=body,
        variables=variables,
        temperature=temperature,
        section=meta.get("section", ""),
        max_tokens=max_tokens,
        path=path,
        meta=meta,
    )


def _default_dir() -> Any:
    return importlib.resources.files("synthir") / "_prompts"


def _prompt_dir(prompts_dir: str | Path | None) -> Any:
    return _default_dir() if prompts_dir is None else Path(prompts_dir)


def load_prompt(name: str, prompts_dir: str | Path | None = None) -> PromptTemplate:
    """Load ``<prompts_dir>/<name>.txt`` (default: the packaged ``synthir/_prompts``, i.e. the repo's prompts/)."""
    stem = name[:-4] if name.endswith(".txt") else name
    if not stem or "/" in stem or "\\" in stem:
        raise PromptError(f"bad prompt name {name!r}")
    d = _prompt_dir(prompts_dir)
    f = d / f"{stem}.txt"
    if not f.is_file():
        raise PromptError(
            f"{f}: no such prompt file (available in {d}: {', '.join(list_prompts(prompts_dir)) or 'none'})"
        )
    return parse_prompt(f.read_text(encoding="utf-8"), stem, str(f))


def list_prompts(prompts_dir: str | Path | None = None) -> list[str]:
    """Sorted names (file stems) of the ``*.txt`` prompt files in the prompts directory."""
    d = _prompt_dir(prompts_dir)
    if not d.is_dir():
        return []
    return sorted(p.name[:-4] for p in d.iterdir() if p.name.endswith(".txt") and p.is_file())
