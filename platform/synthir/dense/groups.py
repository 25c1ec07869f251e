"""Training groups for the dense losses, built from the stage-1 table (stage 1) or the preference triples (stage 2).

A group is one row of texts in the column order the loss modules expect (``synthir.dense.losses``):

* stage 1, ``columns="full"``: ``anchor, gold, p_plus, q_cot, p_minus, [neg_1 ...]`` with ``label`` = the p+
  verdict (1 yes, 0 no -> p+ becomes a hard negative, -1 unparsed -> p+ leaves the loss);
* ``"cot_only"``: ``anchor, gold, q_cot, [neg ...]`` (the paper's q_cot ablation);
* ``"pm_only"``: ``anchor, gold, p_plus, p_minus, [neg ...]`` with the verdict label (the p+/p- ablation);
* ``"gold_only"``: ``anchor, gold, [neg ...]`` for the gold-only InfoNCE baseline;
* stage 2: ``anchor, c_plus, c_minus`` (partial Plackett-Luce or Bradley-Terry).

Every passage is in the one text form used everywhere (``title + " " + text``, see ``data.schemas``); queries get
the encoder's query prefix, every candidate column (q_cot included: it sits on the candidate side of the score
matrix) the passage prefix. A query with several gold passages gives one group per gold passage; the trainer's
no-duplicates batch sampler then keeps each batch to distinct queries.
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa

from synthir.dense.encoder import EncoderConfig

Stage1Columns = Literal["full", "cot_only", "pm_only", "gold_only"]

#: per layout: the candidate columns (after ``anchor``), which of them are positive, and which one the label switches
LAYOUTS: dict[str, tuple[tuple[str, ...], tuple[int, ...], int | None]] = {
    "full": (("gold", "p_plus", "q_cot", "p_minus"), (0, 1, 2), 1),
    "cot_only": (("gold", "q_cot"), (0, 1), None),
    "pm_only": (("gold", "p_plus", "p_minus"), (0, 1), 1),
    "gold_only": (("gold",), (0,), None),
}


def negative_columns(count: int) -> list[str]:
    """Names of the corpus-mined hard-negative columns."""
    return [f"neg_{i + 1}" for i in range(count)]


def stage1_groups(table: pa.Table, encoder: EncoderConfig, columns: Stage1Columns = "full",
                  mined: dict[str, list[str]] | None = None, num_negatives: int = 0) -> pa.Table:
    """Training groups from a stage-1 table (``synth.syntriever.STAGE1_SCHEMA``), one per (query, gold passage)."""
    if columns not in LAYOUTS:
        raise ValueError(f"columns must be one of {sorted(LAYOUTS)}, got {columns!r}")
    names, _, relabel = LAYOUTS[columns]
    negs = negative_columns(num_negatives)
    if num_negatives and mined is None:
        raise ValueError("num_negatives > 0 needs the mined hard negatives (query_id -> passage texts)")
    q, p = encoder.query_prefix, encoder.passage_prefix
    out: dict[str, list] = {"query_id": [], "anchor": [], **{n: [] for n in names}, **{n: [] for n in negs}}
    if relabel is not None:
        out["label"] = []
    for row in table.to_pylist():
        if not row["gold_passages"]:
            raise ValueError(f"stage-1 row for query {row['query_id']!r} has no gold passage")
        hard = (mined or {}).get(row["query_id"], [])[:num_negatives]
        if len(hard) < num_negatives:
            raise ValueError(f"query {row['query_id']!r} has {len(hard)} mined negatives, {num_negatives} needed")
        for gold in row["gold_passages"]:
            out["query_id"].append(row["query_id"])
            out["anchor"].append(q + row["query"])
            values = {"gold": gold, "p_plus": row["p_plus"], "q_cot": row["q_cot"], "p_minus": row["p_minus"]}
            for name in names:
                out[name].append(p + values[name])
            for name, text in zip(negs, hard):
                out[name].append(p + text)
            if relabel is not None:
                out["label"].append(-1 if row["verdict"] is None else int(row["verdict"]))
    return pa.table(out)


def stage2_groups(triples: pa.Table, encoder: EncoderConfig) -> pa.Table:
    """Training groups ``anchor, c_plus, c_minus`` from preference triples (``query``, ``c_plus``, ``c_minus`` texts)."""
    q, p = encoder.query_prefix, encoder.passage_prefix
    return pa.table({
        "query_id": triples["query_id"],
        "anchor": [q + t for t in triples["query"].to_pylist()],
        "c_plus": [p + t for t in triples["c_plus"].to_pylist()],
        "c_minus": [p + t for t in triples["c_minus"].to_pylist()],
    })
