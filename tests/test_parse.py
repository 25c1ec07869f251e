"""LLM-answer parsers: real habits parse, ambiguous or off-format answers fail (never a silent label)."""

from __future__ import annotations

import gzip
import importlib.resources
import json
from pathlib import Path

import pytest

from synthir.llm.parse import (
    ParseFailure,
    parse_dash_list,
    parse_keywords,
    parse_passage_choice,
    parse_query_answer_pairs,
    parse_yes_no,
    try_parse,
)

SHARED = Path("/work/shared/data/scifact")


# ----------------------------------------------------------------------------- ParseFailure


def test_parse_failure_carries_text_and_parser():
    with pytest.raises(ParseFailure) as e:
        parse_yes_no("maybe")
    assert isinstance(e.value, ValueError)
    assert e.value.text == "maybe" and e.value.parser == "parse_yes_no"
    assert "parse_yes_no" in str(e.value) and "maybe" in str(e.value)


def test_try_parse_returns_failure_instead_of_raising():
    assert try_parse(parse_yes_no, "Yes.") is True
    f = try_parse(parse_yes_no, "perhaps")
    assert isinstance(f, ParseFailure) and f.text == "perhaps"


@pytest.mark.parametrize(
    "parser", [parse_yes_no, parse_passage_choice, parse_dash_list, parse_query_answer_pairs, parse_keywords]
)
@pytest.mark.parametrize("text", ["", "   \n\t ", None])
def test_empty_or_none_fails_everywhere(parser, text):
    with pytest.raises(ParseFailure):
        parser(text)


# ----------------------------------------------------------------------------- yes / no


@pytest.mark.parametrize(
    "text,expected",
    [
        ("yes", True),
        ("no", False),
        ("Yes.", True),
        ("No.", False),
        ("YES", True),
        ("**No**", False),
        ("**Yes.**", True),
        ("*no*", False),
        ("`yes`", True),
        ('"Yes"', True),
        ("'no'", False),
        ("\u201cNo.\u201d", False),
        ("   \n  Yes", True),
        ("> No", False),
        ("## Yes", True),
        ("yes, the passage is relevant to the question.", True),
        ("No, the passage discusses a different finding.", False),
        ("No \u2014 it is about mice, not humans.", False),
        ("Yes!", True),
        ("Answer: No", False),
        ("Answer: yes.", True),
        ("**Answer:** Yes", True),
        ("Final answer: no", False),
        ("A: yes", True),
        ("The answer is no.", False),
        ("Considering the claim, the answer is: **Yes**", True),
        ("Yes\n\nThe passage directly addresses the question.", True),
        ("No. Although related, the passage does not say yes to the claim.", False),
        ("Yes, the passage", True),  # cut off by max_tokens = 8
    ],
)
def test_parse_yes_no(text, expected):
    assert parse_yes_no(text) is expected


@pytest.mark.parametrize(
    "text",
    [
        "maybe",
        "Maybe.",
        "yes and no",
        "Yes or no?",
        "Yes/No",
        "no/yes",
        "Not relevant.",
        "Nope",
        "Yesterday it was relevant.",
        "The passage is relevant.",
        "I cannot determine that.",
        "Partially.",
        "The answer is yes. Actually the answer is no.",
    ],
)
def test_parse_yes_no_failures(text):
    with pytest.raises(ParseFailure):
        parse_yes_no(text)


def _scifact_file(rel: str) -> Path | None:
    vendored = importlib.resources.files("synthir") / "_data" / "scifact" / (rel + ".gz")
    if vendored.is_file():
        return Path(str(vendored))
    shared = SHARED / rel
    return shared if shared.is_file() else None


def test_recorded_relabel_answers_all_parse_44_no():
    path = _scifact_file("teacher/stage1-answers.jsonl")
    if path is None:
        pytest.skip("recorded teacher answers not available")
    opener = gzip.open if path.suffix == ".gz" else open
    verdicts = {}
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec["custom_id"].startswith("syntriever/relabel/"):
                verdicts[rec["custom_id"]] = parse_yes_no(rec["response"]["body"]["choices"][0]["message"]["content"])
    assert len(verdicts) == 809
    assert sum(1 for v in verdicts.values() if v is False) == 44


# ----------------------------------------------------------------------------- passage #1 / #2


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Passage #2", 2),
        ("Passage #1", 1),
        ("Passage #1.", 1),
        ("passage #2", 2),
        ("Answer: Passage #1", 1),
        ("**Answer:** Passage #2", 2),
        ("**Passage #1**", 1),
        ('"Passage #2"', 2),
        ("Passage 2", 2),
        ("Passage (1)", 1),
        ("#2", 2),
        ("2", 2),
        ("1.", 1),
        ("Answer: 2", 2),
        ("passage #1 is more relevant", 1),
        ("Passage #1 is more relevant.", 1),
        ("Passage #2 is the more relevant passage.", 2),
        ("Passage #2 is more relevant than Passage #1", 2),  # the leading answer sentence wins
        ("Passage #1 is more relevant than Passage #2 because it reports the trial.", 1),
        ("Passage #2\n\nExplanation: Passage #1 is about mice, not humans.", 2),
        ("Passage #2. Passage #1 only discusses the background.", 2),
        ("Passage #1, because it directly reports the cohort result.", 1),
        ("Passage #2 - it addresses the exact claim.", 2),
        ("Passage #2 because it addresses the claim.", 2),
        ("Passage #2: It directly addresses the question.", 2),
        ("The answer is Passage #1.", 1),
        ("The more relevant passage is Passage #2.", 2),
        ("I choose Passage #1.", 1),
        ("I would choose Passage #2.", 2),
        ("The second passage is more relevant.", 2),
        ("The first passage.", 1),
        ("Based on my professional knowledge, Passage #2 is more relevant.", 2),
        ("Both passages are related, but Passage #1 is more relevant to the question.", 1),
        ("Passage #1 is less relevant than Passage #2.", 2),
        ("After comparing, I pick Passage #2; Passage #1 is off-topic.", 2),
        ("Considering the claim, Passage #2 directly addresses it.", 2),  # only one passage mentioned
    ],
)
def test_parse_passage_choice(text, expected):
    assert parse_passage_choice(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Passage #1 discusses A. Passage #2 discusses B.",
        "Passage #1: discusses the mouse model.\nPassage #2: discusses the human cohort.",
        "Passage #1 or Passage #2",
        "Only answer as Passage #1 or Passage #2",
        "Passage #1 is not relevant, while Passage #2 addresses it.",
        "Passage #2 is not relevant.",
        "Neither passage is relevant.",
        "Both passages are equally relevant.",
        "Passage #1 is more relevant to mice, but Passage #2 is more relevant to humans.",
        "Passage #2. On reflection, Passage #1 is more relevant.",  # leading pick contradicted
        "Passage #3",
        "Passage #12",
        "I cannot decide.",
        "3",
    ],
)
def test_parse_passage_choice_failures(text):
    with pytest.raises(ParseFailure):
        parse_passage_choice(text)


# ----------------------------------------------------------------------------- dash lists


@pytest.mark.parametrize(
    "text,expected",
    [
        ("- What is X?\n- What is Y?", ["What is X?", "What is Y?"]),
        (
            "Here are 10 questions:\n\n- What is X?\n- What is Y?\n\nLet me know if you need more!",
            ["What is X?", "What is Y?"],
        ),
        ("* What is X?\n* What is Y?", ["What is X?", "What is Y?"]),
        ("\u2022 What is X?\n\u2022 What is Y?", ["What is X?", "What is Y?"]),
        ("1. What is X?\n2. What is Y?\n10. What is Z?", ["What is X?", "What is Y?", "What is Z?"]),
        ("1) What is X?\n2) What is Y?", ["What is X?", "What is Y?"]),
        ("- **What is X?**\n- __What is Y?__", ["What is X?", "What is Y?"]),
        ('- "What is X?"\n- \u201cWhat is Y?\u201d', ["What is X?", "What is Y?"]),
        ("-What is X?\n-  What is Y?  ", ["What is X?", "What is Y?"]),
        ("  - What is X?\n  - What is Y?", ["What is X?", "What is Y?"]),
        ("- What is the long\n  wrapped question?\n- Short?", ["What is the long wrapped question?", "Short?"]),
        ("**Questions:**\n---\n- What is 5 * 3 in snake_case?\n", ["What is 5 * 3 in snake_case?"]),
        ("```markdown\n- What is X?\n- What is Y?\n```", ["What is X?", "What is Y?"]),
        ("Output:\n- Chunk-level questions:\n  - What is X?", ["What is X?"]),
        ("- What is the *role* of `p38`?", ["What is the role of p38?"]),
    ],
)
def test_parse_dash_list(text, expected):
    assert parse_dash_list(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Here are 10 questions:",
        "What is X? What is Y?",
        "What is X?\nWhat is Y?",
        "---\n***\n",
        "- \n- **\n",
    ],
)
def test_parse_dash_list_failures(text):
    with pytest.raises(ParseFailure):
        parse_dash_list(text)


# ----------------------------------------------------------------------------- query / answer pairs


@pytest.mark.parametrize(
    "text,expected",
    [
        (
            "- Query: who founded the bank in 1998? Answer: John Smith\n- Query: bank headquarters city Answer: Oslo",
            [("who founded the bank in 1998?", "John Smith"), ("bank headquarters city", "Oslo")],
        ),
        (
            "- Query: who founded the bank?\n  Answer: John Smith\n- Query: headquarters?\n  Answer: Oslo",
            [("who founded the bank?", "John Smith"), ("headquarters?", "Oslo")],
        ),
        (
            "Here are the pairs:\n\n1. **Query:** who founded the bank?\n   **Answer:** John Smith\n"
            "2. **Query:** headquarters?\n   **Answer:** Oslo\n\nI hope these help.",
            [("who founded the bank?", "John Smith"), ("headquarters?", "Oslo")],
        ),
        ("- **Query**: founder? **Answer**: John Smith", [("founder?", "John Smith")]),
        ("- Query: founder?\n- Answer: John Smith", [("founder?", "John Smith")]),
        ("- Query: founder? | Answer: John Smith", [("founder?", "John Smith")]),
        ("- Query: founder? (Answer: John Smith)", [("founder?", "John Smith")]),
        ('- Query: "founder?" Answer: "John Smith"', [("founder?", "John Smith")]),
        (
            "Query 1: founder?\nAnswer 1: John Smith\n\nQuery 2: city?\nAnswer 2: Oslo",
            [("founder?", "John Smith"), ("city?", "Oslo")],
        ),
        ("- Question: founder? Answer: John Smith", [("founder?", "John Smith")]),
        ("Q: founder?\nA: John Smith", [("founder?", "John Smith")]),
        ("- Query: founder?\n  Answer:\n  John Smith", [("founder?", "John Smith")]),
        # a query without an answer is skipped, the rest kept
        ("- Query: orphan?\n- Query: founder? Answer: John Smith", [("founder?", "John Smith")]),
    ],
)
def test_parse_query_answer_pairs(text, expected):
    assert parse_query_answer_pairs(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "- who founded the bank?\n- where is it?",
        "Query: founder?",
        "Answer: John Smith",
        "- Query:  Answer: John Smith",
        "I cannot generate queries for this context.",
    ],
)
def test_parse_query_answer_pairs_failures(text):
    with pytest.raises(ParseFailure):
        parse_query_answer_pairs(text)


# ----------------------------------------------------------------------------- keywords


@pytest.mark.parametrize(
    "text,expected",
    [
        ("- gold nanoparticles\n- osteogenesis\n- p38 MAPK", ["gold nanoparticles", "osteogenesis", "p38 MAPK"]),
        (
            "Keywords:\n- Gold nanoparticles\n- gold nanoparticles\n- GOLD  NANOPARTICLES\n- bone",
            ["Gold nanoparticles", "bone"],
        ),
        ("- **Osteogenesis**\n- \"Angiogenesis\"\n- Bone.", ["Osteogenesis", "Angiogenesis", "Bone"]),
        ("- U.S.\n- Federal Reserve.", ["U.S.", "Federal Reserve"]),
        ("1. alpha\n2. beta\n3. Alpha", ["alpha", "beta"]),
        ("gold nanoparticles, osteogenesis, bone, Bone", ["gold nanoparticles", "osteogenesis", "bone"]),
        ("Keywords: alpha, beta; gamma", ["alpha", "beta", "gamma"]),
        ("Here are the keywords:\nalpha, beta", ["alpha", "beta"]),
        ("single keyword", ["single keyword"]),
        ("- Keywords: alpha\n- beta", ["alpha", "beta"]),
    ],
)
def test_parse_keywords(text, expected):
    assert parse_keywords(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Keywords:",
        "alpha\nbeta\ngamma",  # several bare lines: neither a list nor one comma-separated line
        ", , ;",
        "- \n- ,",
    ],
)
def test_parse_keywords_failures(text):
    with pytest.raises(ParseFailure):
        parse_keywords(text)
