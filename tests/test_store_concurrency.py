"""Two synthesis processes writing one response store at once: nothing corrupt, nothing lost, nothing half-read."""

import json
import subprocess
import sys
import textwrap

import pytest

from synthir.llm.store import ChatRequest, ResponseStore

WRITER = textwrap.dedent("""
    import sys
    from synthir.llm.store import ChatRequest, ResponseStore
    root, start, stop, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    store = ResponseStore(root)
    for i in range(start, stop):
        req = ChatRequest.make(f"t/{i}", "m", [{"role": "user", "content": f"q{i}"}], {"temperature": 0.0})
        store.put(req, f"answer {i} " + "x" * 20000, {"prompt_tokens": 1, "completion_tokens": 2}, source=tag,
                  bind_custom_id=True)
""")


def _req(i: int) -> ChatRequest:
    return ChatRequest.make(f"t/{i}", "m", [{"role": "user", "content": f"q{i}"}], {"temperature": 0.0})


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_writers_at_once_corrupt_nothing(where, tmp_path, request):
    if where == "s3":
        request.getfixturevalue("s3_server")
        root = f"s3://synthir/concurrency-{tmp_path.name}"
    else:
        root = str(tmp_path / "store")
    n = 60 if where == "s3" else 300
    # overlapping ranges: the middle third is written by both processes, at the same time
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, root, str(a), str(b), tag])
             for a, b, tag in ((0, 2 * n // 3, "A"), (n // 3, n, "B"))]
    store = ResponseStore(root)
    seen_partial = 0
    while any(p.poll() is None for p in procs):
        for rec in store.get_many([_req(i) for i in range(0, n, 7)]):
            if rec is not None:  # a reader sees a whole record or none, never half a file
                seen_partial += not rec["content"].endswith("x" * 20000)
    assert [p.wait() for p in procs] == [0, 0]
    assert seen_partial == 0
    records = store.get_many([_req(i) for i in range(n)])
    assert all(r is not None for r in records)
    for i, rec in enumerate(records):
        assert rec["content"] == f"answer {i} " + "x" * 20000 and rec["key"] == _req(i).key
        assert rec["source"] in ({"A"} if i < n // 3 else {"B"} if i >= 2 * n // 3 else {"A", "B"})
        json.dumps(rec)
    if where == "local":
        leftovers = [p for p in (tmp_path / "store").rglob("*") if p.is_file() and not p.name.endswith(".json")]
        assert leftovers == []  # no temporary file survives a finished write
