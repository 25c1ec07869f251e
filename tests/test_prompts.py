"""Prompt files, loading and rendering; the Syntriever templates must reproduce the recorded teacher requests."""

from __future__ import annotations

import gzip
import importlib.resources
import json
import re
from pathlib import Path

import pytest

from synthir.llm.prompts import (
    GENRET_CONSTRAINT_EXAMPLES,
    PromptError,
    PromptTemplate,
    list_prompts,
    load_prompt,
    parse_prompt,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path("/work/shared/data/scifact")

EXPECTED_PROMPTS = {
    "syntriever_cot": ("question",),
    "syntriever_positive": ("question",),
    "syntriever_negative": ("question",),
    "syntriever_relabel": ("question", "passage"),
    "syntriever_compare": ("passage1", "passage2", "question"),
    "genret_keywords": ("context",),
    "genret_queries": ("num_sequences", "context"),
    "genret_constrained_queries": ("num_sequences", "example", "metadata", "context"),
    "genret_query_answer": ("num_sequences", "context"),
}
EXPERT = (
    "You are a subject matter expert in your field with substantial accumulated knowledge in a specific subject "
    "or topic, validated by academic degrees, certifications, and/or years of professional experience in that "
    "field."
)


# ----------------------------------------------------------------------------- recorded teacher data


def _scifact_file(rel: str) -> Path | None:
    """The vendored ``synthir/_data/scifact/<rel>.gz`` if present, else /work/shared's ``<rel>``, else None."""
    vendored = importlib.resources.files("synthir") / "_data" / "scifact" / (rel + ".gz")
    if vendored.is_file():
        return Path(str(vendored))
    shared = SHARED / rel
    return shared if shared.is_file() else None


def _read_jsonl(rel: str) -> list[dict]:
    path = _scifact_file(rel)
    if path is None:
        pytest.skip(f"recorded SciFact file {rel} not available")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def teacher():
    requests = _read_jsonl("teacher/stage1-requests.jsonl")
    answers = _read_jsonl("teacher/stage1-answers.jsonl")
    queries = {q["_id"]: q["text"] for q in _read_jsonl("queries.jsonl")}
    answer_text = {a["custom_id"]: a["response"]["body"]["choices"][0]["message"]["content"] for a in answers}
    return requests, queries, answer_text


TASK_PROMPT = {
    "cot": "syntriever_cot",
    "positive": "syntriever_positive",
    "negative": "syntriever_negative",
    "relabel": "syntriever_relabel",
}


def _render_for(task: str, qid: str, queries: dict, answer_text: dict) -> tuple[PromptTemplate, list[dict]]:
    tpl = load_prompt(TASK_PROMPT[task])
    variables = {"question": queries[qid]}
    if task == "relabel":  # relabel asks about the same query's `positive` answer
        variables["passage"] = answer_text[f"syntriever/positive/{qid}"]
    return tpl, tpl.messages(**variables)


def test_teacher_requests_first_20_queries_byte_identical(teacher):
    requests, queries, answer_text = teacher
    by_id = {r["custom_id"]: r for r in requests}
    qids: list[str] = []
    for r in requests:
        qid = r["custom_id"].split("/")[2]
        if qid not in qids:
            qids.append(qid)
        if len(qids) == 20:
            break
    assert len(qids) == 20
    for qid in qids:
        for task in TASK_PROMPT:
            rec = by_id[f"syntriever/{task}/{qid}"]
            tpl, msgs = _render_for(task, qid, queries, answer_text)
            assert msgs == rec["body"]["messages"], f"{task}/{qid}"
            # byte-identical, not just equal after JSON decoding
            assert json.dumps(msgs, ensure_ascii=False).encode() == json.dumps(
                rec["body"]["messages"], ensure_ascii=False
            ).encode()
            assert rec["body"]["temperature"] == tpl.temperature
            assert rec["body"]["max_tokens"] == tpl.max_tokens


def test_teacher_requests_all_byte_identical(teacher):
    requests, queries, answer_text = teacher
    assert len(requests) == 4 * 809
    for rec in requests:
        _, task, qid = rec["custom_id"].split("/")
        _, msgs = _render_for(task, qid, queries, answer_text)
        assert msgs == rec["body"]["messages"], rec["custom_id"]


def test_teacher_requests_have_no_system_message(teacher):
    requests, _, _ = teacher
    assert {tuple(m["role"] for m in r["body"]["messages"]) for r in requests} == {("user",)}
    assert load_prompt("syntriever_compare").messages(passage1="a", passage2="b", question="q") == [
        {"role": "user", "content": load_prompt("syntriever_compare").render(passage1="a", passage2="b", question="q")}
    ]


# ----------------------------------------------------------------------------- the prompt files


def test_list_prompts_has_all_paper_prompts():
    assert set(EXPECTED_PROMPTS) <= set(list_prompts())
    assert list_prompts() == sorted(list_prompts())


@pytest.mark.parametrize("name", sorted(EXPECTED_PROMPTS))
def test_prompt_file_header_and_variables(name):
    tpl = load_prompt(name)
    assert tpl.name == name
    assert tpl.variables == EXPECTED_PROMPTS[name]
    paper = "Syntriever" if name.startswith("syntriever") else "Wen et al."
    assert paper in tpl.source
    assert ("Appendix" in tpl.section) or ("2.2" in tpl.section)
    expected_temp = 0.0 if name in ("syntriever_relabel", "syntriever_compare") else 0.7
    assert tpl.temperature == expected_temp
    assert tpl.sampling["temperature"] == expected_temp
    raw = (REPO / "prompts" / f"{name}.txt").read_text(encoding="utf-8")
    header, _, _ = raw.partition("\n---\n")
    assert all(line.startswith("#") for line in header.splitlines())
    assert not tpl.body.startswith("\n") and not tpl.body.endswith("\n")


def test_load_prompt_accepts_txt_suffix_and_explicit_dir():
    a = load_prompt("syntriever_cot")
    b = load_prompt("syntriever_cot.txt", prompts_dir=REPO / "prompts")
    assert a.body == b.body and a.variables == b.variables


def test_packaged_prompts_dir_is_the_repo_prompts_folder():
    packaged = importlib.resources.files("synthir") / "_prompts"
    assert packaged.is_dir()
    assert Path(str(packaged)).resolve() == (REPO / "prompts").resolve()


def test_syntriever_bodies_match_paper():
    assert load_prompt("syntriever_cot").render(question="Q?") == "Q?\nLet's think step-by-step."
    assert load_prompt("syntriever_negative").render(question="Q?") == (
        f"{EXPERT}\n\nQuestion: Q?\n\n"
        "Write a passage that contains plausible but irrelevant context given the question."
    )
    assert load_prompt("syntriever_compare").render(passage1="A", passage2="B", question="Q?") == (
        f"{EXPERT}\n\nPassage #1: A\nPassage #2: B\nQuestion: Q?\n\n"
        "Based on your professional knowledge, choose which passage is more relevant to answer the given question.\n"
        "Only answer as Passage #1 or Passage #2"
    )


def test_genret_bodies_match_paper():
    kw = load_prompt("genret_keywords").render(context="CTX")
    assert kw.startswith("Summarize the following context with meaningful keywords")
    assert kw.endswith("\n\nContext:\nCTX\n\nKeywords:")
    q = load_prompt("genret_queries").render(num_sequences=10, context="CTX")
    assert q.startswith("Your task is to generate a relevant and diverse set of 10 questions that can be answered")
    assert "a list of unordered in Markdown format" in q and q.endswith("Context:\nCTX\n\nOutput:")
    c = load_prompt("genret_constrained_queries").render(
        num_sequences=10, example=GENRET_CONSTRAINT_EXAMPLES["multihop_rag"], metadata="source: BBC", context="CTX"
    )
    assert "at least one metadata filtering requirement.\n\nFor example, if the source of the article is" in c
    assert 'DO NOT use pronoun "this" in any generated queries or answers.' in c
    assert c.endswith("You do not need to provide the answer.\n\nMetadata\nsource: BBC\n\nContext\nCTX\n\nOutput:")
    qa = load_prompt("genret_query_answer").render(num_sequences=10, context="CTX")
    assert qa.startswith("Your task is to generate a relevant and diverse set of less than 10 search engine query")
    assert "The answers are expeced to be a short phrase." in qa  # the paper's typo, verbatim
    assert qa.endswith('"Answer:" with the corresponding answer.\n\nContext\nCTX\n\nOutput:')
    assert '"left-wing" source.' in GENRET_CONSTRAINT_EXAMPLES["allsides"]


# ----------------------------------------------------------------------------- errors


def test_missing_variable_error_names_file_and_variable():
    tpl = load_prompt("syntriever_relabel")
    with pytest.raises(PromptError) as e:
        tpl.render(question="Q?")
    msg = str(e.value)
    assert "syntriever_relabel.txt" in msg and "'passage'" in msg and "missing" in msg


def test_unknown_variable_error_names_file_and_variable():
    tpl = load_prompt("syntriever_cot")
    with pytest.raises(PromptError) as e:
        tpl.render(question="Q?", passage="P")
    msg = str(e.value)
    assert "syntriever_cot.txt" in msg and "'passage'" in msg and "unknown" in msg
    with pytest.raises(PromptError, match="syntriever_cot.txt"):
        tpl.messages(question="Q?", temperature=0.7)


def test_none_value_is_an_error():
    with pytest.raises(PromptError, match="'question' is None"):
        load_prompt("syntriever_cot").render(question=None)


def test_unknown_prompt_name():
    with pytest.raises(PromptError, match="no such prompt file"):
        load_prompt("does_not_exist")
    with pytest.raises(PromptError):
        load_prompt("../pyproject")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / f"{name}.txt").write_text(text, encoding="utf-8")
    return tmp_path


HEADER = "# source: test\n# variables: {vars}\n# temperature: 0.5\n---\n"


def test_literal_braces_in_body_are_safe(tmp_path):
    body = 'Return JSON like {"label": "yes", "scores": {"a": 1}} or {} or { x } for {question}; keep {{question}}.\n'
    _write(tmp_path, "jsonish", HEADER.format(vars="question") + body)
    tpl = load_prompt("jsonish", prompts_dir=tmp_path)
    assert tpl.variables == ("question",)
    out = tpl.render(question="Q {with} braces")
    assert out == (
        'Return JSON like {"label": "yes", "scores": {"a": 1}} or {} or { x } for Q {with} braces; keep {question}.'
    )
    # format_string is str.format-compatible and renders the same text
    assert tpl.format_string.format(question="Q {with} braces") == out


def test_values_are_not_rescanned():
    out = load_prompt("syntriever_relabel").render(question="{passage}", passage="{question} {0} {")
    assert "Question: {passage}\nPassage: {question} {0} {\n" in out


def test_header_errors(tmp_path):
    _write(tmp_path, "nosep", "# source: x\n# variables: a\n# temperature: 0\n{a}\n")
    with pytest.raises(PromptError, match=r"nosep\.txt: no '---'"):
        load_prompt("nosep", prompts_dir=tmp_path)
    _write(tmp_path, "mismatch", HEADER.format(vars="a, b") + "{a}\n")
    with pytest.raises(PromptError, match=r"mismatch\.txt: header declares variables"):
        load_prompt("mismatch", prompts_dir=tmp_path)
    _write(tmp_path, "notemp", "# source: x\n# variables: a\n---\n{a}\n")
    with pytest.raises(PromptError, match="temperature"):
        load_prompt("notemp", prompts_dir=tmp_path)
    _write(tmp_path, "badheader", "# source: x\nvariables: a\n# temperature: 0\n---\n{a}\n")
    with pytest.raises(PromptError, match="must start with '#'"):
        load_prompt("badheader", prompts_dir=tmp_path)
    _write(tmp_path, "wrongname", "# name: other\n" + HEADER.format(vars="a") + "{a}\n")
    with pytest.raises(PromptError, match="differs from the file name"):
        load_prompt("wrongname", prompts_dir=tmp_path)


def test_body_keeps_inner_blank_lines_and_drops_only_final_newline():
    tpl = parse_prompt("# source: s\n# variables: x\n# temperature: 0.7\n---\n\nA {x}\n\nB\n", "t")
    assert tpl.body == "\nA {x}\n\nB"
    assert tpl.max_tokens is None and tpl.sampling == {"temperature": 0.7}


def test_header_comments_are_not_placeholders():
    tpl = load_prompt("genret_constrained_queries")
    # the header quotes {example} / {metadata} in comments; only the body defines variables
    assert tpl.variables == ("num_sequences", "example", "metadata", "context")
    assert "# " not in tpl.body.splitlines()[0]
    assert re.search(r"\{example\}", tpl.body)
