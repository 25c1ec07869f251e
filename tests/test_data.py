"""BEIR/PIR loaders on the bundled data, and clear errors for malformed input."""

import json

import pytest

from synthir.data.beir import DataError, load_beir
from synthir.data.pir import load_pir, query_metadata


def test_bundled_scifact_counts():
    ds = load_beir("scifact", splits=("train", "test"))
    assert ds.corpus.num_rows == 5183 and ds.queries.num_rows == 1109
    assert ds.qrels["train"].num_rows == 919 and len(ds.qrels_dict("train")) == 809
    assert ds.qrels["test"].num_rows == 339 and ds.split_queries("test").num_rows == 300
    p = ds.passages()
    assert p["4983"].startswith("Microstructural development of human newborn cerebral white matter")


def test_pir_keeps_metadata_and_marks_duplicates():
    ds = load_pir("allsides")
    meta = query_metadata(ds)
    assert meta["q0"]["label"] == "left" and ds.qrels["test"].num_rows == 100
    ag = load_pir("agnews")
    raw = load_pir("agnews", mark_duplicates_relevant=False)
    assert raw.qrels["test"].num_rows == 100 and ag.qrels["test"].num_rows > 100


def _write(root, corpus, queries, qrels, split="test"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text(corpus)
    (root / "queries.jsonl").write_text(queries)
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / f"{split}.tsv").write_text(qrels)


GOOD_C = json.dumps({"_id": "d1", "title": "T", "text": "x"}) + "\n"
GOOD_Q = json.dumps({"_id": "q1", "text": "y"}) + "\n"
GOOD_R = "query-id\tcorpus-id\tscore\nq1\td1\t1\n"


@pytest.mark.parametrize(
    "corpus,queries,qrels,file,line,field",
    [
        (GOOD_C + "{bad json\n", GOOD_Q, GOOD_R, "corpus.jsonl", 2, None),
        (GOOD_C + json.dumps({"title": "t", "text": "z"}) + "\n", GOOD_Q, GOOD_R, "corpus.jsonl", 2, "_id"),
        (GOOD_C, json.dumps({"_id": "q1"}) + "\n", GOOD_R, "queries.jsonl", 1, "text"),
        (GOOD_C + GOOD_C, GOOD_Q, GOOD_R, "corpus.jsonl", 2, "_id"),
        (GOOD_C, GOOD_Q, GOOD_R + "q9\td1\t1\n", "test.tsv", 3, "query-id"),
        (GOOD_C, GOOD_Q, GOOD_R + "q1\td9\t1\n", "test.tsv", 3, "corpus-id"),
        (GOOD_C, GOOD_Q, GOOD_R + "q1\td1\thigh\n", "test.tsv", 3, "score"),
    ],
)
def test_malformed_input_names_file_line_field(tmp_path, corpus, queries, qrels, file, line, field):
    _write(tmp_path / "ds", corpus, queries, qrels)
    with pytest.raises(DataError) as e:
        load_beir(str(tmp_path / "ds"))
    err = e.value
    assert err.file.endswith(file) and err.line == line and err.field == field
    assert file in str(err) and f":{line}:" in str(err)


def test_missing_split_lists_available(tmp_path):
    _write(tmp_path / "ds", GOOD_C, GOOD_Q, GOOD_R, split="train")
    with pytest.raises(DataError, match=r"split 'test' not found; available: \['train'\]"):
        load_beir(str(tmp_path / "ds"), splits=("test",))


def test_missing_file(tmp_path):
    (tmp_path / "ds").mkdir()
    with pytest.raises(DataError, match="corpus.jsonl: file not found"):
        load_beir(str(tmp_path / "ds"))
