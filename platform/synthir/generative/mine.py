"""Preference pairs for RPO: negatives are the documents the SFT model ranks ABOVE the positive.

Wen et al. 2025: retrieve with the SFT model (beam 10) for each synthetic query-answer query; every candidate
ranked above the query's own document (within the top ``depth``, 5 or 10) is a negative and pairs with the
positive; a query whose positive is ranked first teaches nothing and is skipped. A positive missing from the
top ``depth`` has every candidate there above it. ``random_pairs`` is the paper's ablation: as many negatives
per query, drawn at random from the other documents (it hurt in the paper).
"""

from __future__ import annotations

import random


def mined_pairs(queries: list[tuple[str, str]], ranked: list[list[str]], depth: int) -> tuple[list[dict], dict]:
    """Pairs ``{query, chosen, rejected}`` from ``queries`` [(query, positive doc)] and each one's ranking; and counts."""
    if len(queries) != len(ranked):
        raise ValueError(f"{len(queries)} queries but {len(ranked)} rankings")
    pairs: list[dict] = []
    counts = {"queries": len(queries), "positive_first": 0, "used": 0, "pairs": 0}
    for (query, positive), docs in zip(queries, ranked):
        top = docs[:depth]
        if top and top[0] == positive:
            counts["positive_first"] += 1
            continue
        above = top[: top.index(positive)] if positive in top else top
        if not above:
            continue
        counts["used"] += 1
        pairs.extend({"query": query, "chosen": positive, "rejected": d} for d in above)
    counts["pairs"] = len(pairs)
    return pairs, counts


def random_pairs(mined: list[dict], doc_ids: list[str], seed: int = 0) -> list[dict]:
    """The ablation: each mined pair's negative replaced by a random other document (same queries, same counts)."""
    if len(set(doc_ids)) < 2:
        raise ValueError("random negatives need at least two documents")
    rng = random.Random(seed)
    out = []
    for pair in mined:
        while True:
            negative = rng.choice(doc_ids)
            if negative != pair["chosen"]:
                break
        out.append({**pair, "rejected": negative})
    return out
