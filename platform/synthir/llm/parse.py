"""Parsers for LLM answers, robust to common habits (markdown, quotes, preambles, labels).

Every parser returns a typed result or raises :class:`ParseFailure` (a ``ValueError`` carrying the raw text
and the parser's name). A parser never guesses a label: an empty, ambiguous or off-format answer fails, and
the calling code counts and keeps the failures. :func:`try_parse` returns the failure instead of raising.
"""

from __future__ import annotations

import re
from typing import Callable, TypeVar

__all__ = [
    "ParseFailure",
    "parse_dash_list",
    "parse_keywords",
    "parse_passage_choice",
    "parse_query_answer_pairs",
    "parse_yes_no",
    "try_parse",
]

T = TypeVar("T")


class ParseFailure(ValueError):
    """An LLM answer that a parser could not read; keeps the raw text and the parser's name."""

    def __init__(self, parser: str, text: str | None, reason: str):
        self.parser = parser
        self.text = text
        self.reason = reason
        shown = text if text is None or len(text) <= 200 else text[:200] + "..."
        super().__init__(f"{parser}: {reason}: {shown!r}")


def try_parse(parser: Callable[[str], T], text: str) -> T | ParseFailure:
    """Run ``parser(text)``; return its ParseFailure instead of raising it."""
    try:
        return parser(text)
    except ParseFailure as e:
        return e


# --------------------------------------------------------------------------------------------- helpers

_QUOTES = "\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb"


def _strip_emphasis(s: str) -> str:
    """Drop markdown bold/italic/code marks, keeping a lone '*' or '_' that is not emphasis (5 * 3, snake_case)."""
    s = s.replace("**", "").replace("__", "").replace("`", "")
    s = re.sub(r"(?<![\w*])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?![\w*])", r"\1", s)
    s = re.sub(r"(?<!\w)_(?=[^\s_])([^_\n]*?[^\s_])_(?!\w)", r"\1", s)
    return s


def _check_text(parser: str, text: object) -> str:
    if not isinstance(text, str):
        raise ParseFailure(parser, None if text is None else repr(text), f"not a string ({type(text).__name__})")
    if not text.strip():
        raise ParseFailure(parser, text, "empty answer")
    return text


def _strip_markup(s: str) -> str:
    """Drop markdown emphasis/code marks and leading blockquote/heading marks from one line or text."""
    s = _strip_emphasis(s)
    s = re.sub(r"(?m)^\s*(?:>\s*)+", "", s)  # blockquotes
    s = re.sub(r"(?m)^\s*#{1,6}\s+", "", s)  # headings
    return s


def _strip_quotes(s: str) -> str:
    s = s.strip()
    while len(s) >= 2 and s[0] in _QUOTES and s[-1] in _QUOTES:
        s = s[1:-1].strip()
    # an unbalanced leading or trailing quote (e.g. '"What is X?' or 'X"')
    if s[:1] in _QUOTES and not any(c in s[1:] for c in _QUOTES):
        s = s[1:].strip()
    if s[-1:] in _QUOTES and not any(c in s[:-1] for c in _QUOTES):
        s = s[:-1].strip()
    return s


def _clean_item(s: str) -> str:
    s = _strip_markup(s).strip()
    s = _strip_quotes(s)
    return re.sub(r"\s+", " ", s).strip()


# --------------------------------------------------------------------------------------------- yes / no

_ANSWER_LABEL = re.compile(
    r"^\s*(?:(?:final|short|my)\s+)?(?:answer|response|verdict|output|decision|a)\s*[:\-\u2013\u2014]\s*",
    re.I,
)
_YES_NO_AT_START = re.compile(r"^\W*(yes|no)\b", re.I)
_YES_NO_BOTH = re.compile(r"^\W*(?:yes\W*(?:and|or|/|&)\W*no|no\W*(?:and|or|/|&)\W*yes)\b", re.I)
_YES_NO_ANSWER_IS = re.compile(
    r"\b(?:the\s+)?(?:answer|verdict)\s*(?:is|would\s+be|:)\s*:?\s*\W{0,3}(yes|no)\b", re.I
)


def parse_yes_no(text: str) -> bool:
    """Read a yes/no answer: True for yes, False for no; ambiguous, empty or off-format answers fail."""
    name = "parse_yes_no"
    _check_text(name, text)
    t = _strip_quotes(_strip_markup(text).strip())
    t = _ANSWER_LABEL.sub("", t, count=1)
    t = _strip_quotes(t)
    if _YES_NO_BOTH.match(t):
        raise ParseFailure(name, text, "both yes and no")
    m = _YES_NO_AT_START.match(t)
    if m:
        return m.group(1).lower() == "yes"
    found = {m.group(1).lower() for m in _YES_NO_ANSWER_IS.finditer(t)}
    if len(found) == 1:
        return found.pop() == "yes"
    if len(found) > 1:
        raise ParseFailure(name, text, "both yes and no")
    raise ParseFailure(name, text, "no leading yes/no")


# --------------------------------------------------------------------------------------------- passage #1 / #2

_REF = (
    r"(?:passage|option|candidate|choice)\s*(?:#|no\.?|number|num\.?)?\s*\(?([12])\)?(?!\d)"
    r"|(?<![\w#])#\s*([12])(?!\d)"
    r"|\b(?:the\s+)?(first|second)\s+(?:passage|one|option)\b"
    r"|\bpassage\s+(one|two)\b"
)
_REF_RE = re.compile(_REF, re.I)
_LEADING_REF = re.compile(r"\W{0,3}(?:" + _REF + r")", re.I)
_CLAUSE_END = re.compile(r"[.,;:!?\u2013\u2014(\n]|\s-\s|\s(?:because|since|as|as it|which)\b", re.I)
_WORD_NUM = {"first": 1, "second": 2, "one": 1, "two": 2}
_CHOICE_LABEL = re.compile(
    r"^\s*(?:"
    r"(?:(?:final|my|short)\s+)?(?:answer|choice|response|selection|verdict|output|pick)\s*[:\-\u2013\u2014]"
    r"|(?:so\s+|thus\s+|therefore\s*,?\s+)?(?:the\s+)?(?:final\s+)?(?:answer|choice)\s+is\s*:?"
    r"|(?:the\s+)?(?:more|most)\s+relevant\s+(?:passage\s+)?is\s*:?"
    r"|(?:the\s+)?(?:better|best)\s+(?:passage|choice|option)\s+is\s*:?"
    r"|i\s+(?:would\s+)?(?:choose|pick|select|go\s+with)\s*:?"
    r")\s*",
    re.I,
)
# A reference followed by a positive comparative: "Passage #2 is more relevant", "Passage #1 is the better one".
_POSITIVE_AFTER = re.compile(
    r"^\W{0,3}\s*(?:is|seems|appears|would\s+be)\s+(?:to\s+be\s+)?(?:clearly\s+|much\s+|far\s+)?"
    r"(?:the\s+)?(?:more|most|better|best)\b",
    re.I,
)
_PICK_BEFORE = re.compile(
    r"(?:\b(?:choose|chose|pick|picked|select|selected|prefer|preferred|go\s+with)"
    r"|\banswer\s*(?:is|:)|\bless\s+relevant\s+than|\b(?:more|most)\s+relevant\s+(?:passage\s+)?(?:is|:))"
    r"\s*:?\s*\W{0,3}$",
    re.I,
)
_NEGATION = re.compile(
    r"\b(?:not|neither|nor|less|irrelevant|unrelated|none|both)\b|n't\b", re.I
)


def _ref_value(m: re.Match[str]) -> int:
    g = next(x for x in m.groups() if x)
    return int(g) if g.isdigit() else _WORD_NUM[g.lower()]


def parse_passage_choice(text: str) -> int:
    """Read which passage (1 or 2) an answer picks; fail when no clear pick is made.

    Rules, in order (after stripping markdown, quotes and a leading "Answer:" / "The answer is" label):
      1. The answer is just a reference or a bare digit ("Passage #2", "#1", "2", "Passage 2.") -> it.
      2. The answer STARTS with a reference that is either alone in its first clause ("Passage #2. It
         discusses...", "Passage #1, because ...", "Passage #2 - ...") or followed by a positive comparative
         ("Passage #2 is more relevant than Passage #1") -> that leading reference. A leading reference
         followed by anything else ("Passage #1 discusses A.") is not an answer. A leading pick that a later
         explicit pick of the other passage contradicts fails.
      3. Explicit picks anywhere ("I choose Passage #2", "Passage #1 is more relevant", "less relevant than
         Passage #2", "the more relevant passage is Passage #1"): if they all agree -> that passage.
      4. Exactly one passage is mentioned in the whole answer and nothing negates it ("not", "less",
         "neither", "irrelevant", "both"...) -> that passage.
      5. Otherwise -> ParseFailure (e.g. "Passage #1 discusses A. Passage #2 discusses B.").
    """
    name = "parse_passage_choice"
    _check_text(name, text)
    t = _strip_quotes(_strip_markup(text).strip())
    t = re.sub(r"[ \t]+", " ", t)
    for candidate in (t, _strip_quotes(_CHOICE_LABEL.sub("", t, count=1))):
        m = re.fullmatch(r"\W*([12])\W*", candidate)
        if m:
            return int(m.group(1))
    lead = _strip_quotes(_CHOICE_LABEL.sub("", t, count=1))
    mentioned = {_ref_value(m) for m in _REF_RE.finditer(t)}

    # explicit picks anywhere (rule 3), also used to veto a contradicted leading reference
    picks = set()
    for m in _REF_RE.finditer(t):
        before, after = t[: m.start()], t[m.end() :]
        if _POSITIVE_AFTER.match(after) or _PICK_BEFORE.search(before[-60:]):
            picks.add(_ref_value(m))

    # rules 1 and 2: a leading reference
    m = _LEADING_REF.match(lead)
    if m:
        pick = _ref_value(m)
        rest = lead[m.end() :]
        leading_answer = bool(_POSITIVE_AFTER.match(rest))
        if not leading_answer and not _CLAUSE_END.split(rest, maxsplit=1)[0].strip():
            # "Passage #1: <text>" may be an analysis of each passage in turn: only an answer if the
            # other passage is not mentioned at all
            leading_answer = not rest.lstrip().startswith(":") or mentioned == {pick}
        if leading_answer:
            if picks - {pick}:
                raise ParseFailure(name, text, "leading pick contradicted later")
            return pick

    # rule 3
    if len(picks) == 1:
        return picks.pop()
    if len(picks) > 1:
        raise ParseFailure(name, text, "picks both passages")

    # rule 4: a single, un-negated mention
    if len(mentioned) == 1 and not _NEGATION.search(t):
        return mentioned.pop()
    if not mentioned:
        raise ParseFailure(name, text, "no passage reference")
    raise ParseFailure(name, text, "no clear pick")


# --------------------------------------------------------------------------------------------- lists

_MARKER = re.compile(
    r"^\s*(?:[-\u2022\u2013\u2014+\u25aa\u25cf\u25e6](?!-)\s*"  # dash / bullet (not "---")
    r"|\*\s+|\(?\d{1,3}[.)]\s+|\(?[a-z][.)]\s+)(?=\S)"  # "* ", "1." "1)" "(1)", "a)"
)
_HRULE = re.compile(r"^\s*(?:[-*_=]\s*){3,}$")


def _list_items(text: str) -> list[str]:
    """Raw items of a markdown list (marker stripped); wrapped, indented continuation lines are joined."""
    items: list[str] = []
    in_item = False
    for line in text.splitlines():
        if not line.strip():
            in_item = False
            continue
        if _HRULE.match(line) or line.strip().startswith("```"):
            continue
        m = _MARKER.match(line)
        if m:
            items.append(line[m.end() :])
            in_item = True
        elif in_item and line[:1].isspace():
            items[-1] += " " + line.strip()
        else:
            in_item = False  # preamble / postamble / heading: dropped
    return items


def parse_dash_list(text: str) -> list[str]:
    """Items of a markdown list ("- ", "* ", "• ", "1.", "1)"), cleaned; preamble lines dropped; empty fails."""
    name = "parse_dash_list"
    _check_text(name, text)
    # an item ending with ":" is a heading ("Chunk-level questions:"), not an item
    items = [c for c in (_clean_item(i) for i in _list_items(text)) if c and not c.endswith(":")]
    if not items:
        raise ParseFailure(name, text, "no list items")
    return items


def _dedupe(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for it in items:
        key = re.sub(r"\s+", " ", it).casefold()
        if key not in seen:
            seen.add(key)
            out.append(it)
    return out


def _clean_keyword(s: str) -> str:
    s = _clean_item(s)
    s = re.sub(r"^(?:keywords?|kw)\s*:\s*", "", s, flags=re.I)
    # a trailing period or comma is punctuation unless the keyword is an abbreviation like "U.S."
    if s.endswith(",") or s.endswith(";"):
        s = s[:-1].rstrip()
    if s.endswith(".") and "." not in s[:-1]:
        s = s[:-1].rstrip()
    return _strip_quotes(s)


def parse_keywords(text: str) -> list[str]:
    """Keywords from a dash list, or a single comma/semicolon-separated line; deduped case-insensitively."""
    name = "parse_keywords"
    _check_text(name, text)
    items = _list_items(text)
    if not items:
        lines = [_strip_markup(line).strip() for line in text.splitlines() if line.strip()]
        # drop label-only lines ("Keywords:", "Here are the keywords:")
        lines = [line for line in lines if not line.endswith(":")]
        if len(lines) != 1:
            raise ParseFailure(name, text, "no list items and not a single comma-separated line")
        line = re.sub(r"^(?:here\s+are\s+(?:the\s+)?)?keywords?\s*:\s*", "", lines[0], flags=re.I)
        items = re.split(r"\s*[,;]\s*", line) if re.search(r"[,;]", line) else [line]
    keywords = _dedupe([k for k in (_clean_keyword(i) for i in items) if k])
    if not keywords:
        raise ParseFailure(name, text, "no keywords")
    return keywords


# --------------------------------------------------------------------------------------------- query/answer pairs

_LINE_START = r"^[ \t]*(?:[-*\u2022][ \t]*|\d{1,3}[.)][ \t]*)?"  # "Q:" / "A:" count only at a line start
_QA_LABEL = re.compile(
    r"(?:\b(?P<q>query|question)(?:\s*\d{1,3})?|" + _LINE_START + r"(?P<q1>q)(?:\s*\d{1,3})?)\s*:"
    r"|(?:\b(?P<a>answer)(?:\s*\d{1,3})?|" + _LINE_START + r"(?P<a1>a)(?:\s*\d{1,3})?)\s*:",
    re.I | re.M,
)
_TRAILING_SEP = re.compile(r"[\s|;,\-\u2013\u2014/(\[]+$")
_TRAILING_MARKER = re.compile(r"(?:\s|^)(?:[-*\u2022+]|\d{1,3}[.)])\s*$")


def _clean_pair_part(s: str) -> str:
    s = _strip_markup(s)
    s = _TRAILING_MARKER.sub("", s.rstrip())
    s = re.sub(r"\s+", " ", s).strip()
    s = _TRAILING_SEP.sub("", s).strip()
    s = re.sub(r"^[\s|;,\-\u2013\u2014:]+", "", s)
    s = _strip_quotes(s)
    if s.endswith(")") and "(" not in s:
        s = s[:-1].rstrip()
    if s.endswith("]") and "[" not in s:
        s = s[:-1].rstrip()
    return s


def parse_query_answer_pairs(text: str) -> list[tuple[str, str]]:
    """(query, answer) pairs from "- Query: ... Answer: ..." items (same line or next line, bold, numbered).

    A query label is paired with the next answer label; the query is the text between them and the answer is
    the rest of its line (or the next non-empty line when the label ends its line). Labels without a partner
    and pairs with an empty side are skipped; when no pair parses, ParseFailure.
    """
    name = "parse_query_answer_pairs"
    _check_text(name, text)
    t = _strip_emphasis(text)
    labels = [(m, "q" if (m.group("q") or m.group("q1")) else "a") for m in _QA_LABEL.finditer(t)]
    pairs: list[tuple[str, str]] = []
    for i, (m, kind) in enumerate(labels):
        if kind != "q" or i + 1 >= len(labels) or labels[i + 1][1] != "a":
            continue
        a_m = labels[i + 1][0]
        query = _clean_pair_part(t[m.end() : a_m.start()])
        end = labels[i + 2][0].start() if i + 2 < len(labels) else len(t)
        rest = t[a_m.end() : end]
        answer_lines = [line for line in rest.split("\n") if line.strip()]
        answer = _clean_pair_part(answer_lines[0]) if answer_lines else ""
        if query and answer:
            pairs.append((query, answer))
    if not pairs:
        raise ParseFailure(name, text, "no Query:/Answer: pairs")
    return pairs


# --------------------------------------------------------------------------------------------- metadata attributes


def parse_attributes(text: str, names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``{name: value}`` from "Name: value" lines (names matched case-insensitively, markup stripped), in ``names``' order.

    Lines naming other attributes are ignored; a name given twice keeps its first value. ParseFailure when none of
    ``names`` is found.
    """
    name = "parse_attributes"
    _check_text(name, text)
    wanted = {n.casefold(): n for n in names}
    found: dict[str, str] = {}
    for line in _strip_emphasis(text).splitlines():
        line = _MARKER.sub("", line.strip(), count=1)
        key, sep, value = line.partition(":")
        canonical = wanted.get(_strip_markup(key).strip().casefold())
        value = _strip_quotes(re.sub(r"\s+", " ", value).strip())
        if sep and canonical and value and canonical not in found:
            found[canonical] = value
    if not found:
        raise ParseFailure(name, text, f"none of the attributes {list(names)}")
    return {n: found[n] for n in names if n in found}
