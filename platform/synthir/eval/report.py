"""Summary tables for the terminal and Markdown, and bar plots of metrics people compare."""

from __future__ import annotations

import io
import json
from typing import Sequence

from synthir import storage


def _cell(row: dict, column: str, percent: Sequence[str]) -> str:
    """One table cell: empty for a missing value, 0-1 ``percent`` columns as %, floats to 3 significant digits."""
    v = row.get(column)
    if v is None:
        return ""
    if column in percent and isinstance(v, (int, float)):
        return f"{100 * v:.2f}"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def format_table(rows: Sequence[dict], columns: Sequence[str], percent: Sequence[str] = ()) -> str:
    """A fixed-width text table; columns in ``percent`` (0-1 values) print as percentages with 2 decimals."""
    cells = [[_cell(r, c, percent) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(vals, widths)))
    out = [line(list(columns)), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def markdown_table(rows: Sequence[dict], columns: Sequence[str], percent: Sequence[str] = ()) -> str:
    """The same table as GitHub Markdown."""
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(_cell(r, c, percent) for c in columns) + " |" for r in rows]
    return "\n".join(out)


def bar_plot(rows: Sequence[dict], label: str, metrics: Sequence[str], uri: str, title: str = "") -> str:
    """Grouped bars of ``metrics`` (0-1, shown in %) for each row, written as a PNG to ``uri``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows) * len(metrics) / 2), 4))
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(metrics))
    for i, row in enumerate(rows):
        vals = [100 * float(row.get(m, 0.0)) for m in metrics]
        bars = ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=str(row[label]))
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, metrics)
    ax.set_ylabel("score (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    storage.write_bytes(uri, buf.getvalue())
    return uri


def json_line(values: dict) -> str:
    """The one JSON object a ``--json`` command prints last."""
    return json.dumps(values, sort_keys=True, default=str)


def bundled_benchmark(dataset: str) -> dict | None:
    """The full benchmark's per-row means shipped with a bundled dataset (``_data/<name>/benchmark.json``), or None."""
    from synthir.data.beir import BUNDLED, bundled_root

    uri = storage.join(bundled_root(dataset), "benchmark.json") if dataset in BUNDLED else None
    return storage.read_json(uri) if uri and storage.exists(uri) else None


def benchmark_line(reference: dict, metric: str = "ndcg@10") -> str:
    """One sentence naming what the full benchmark found, row by row (``bundled_benchmark``'s dict)."""
    rows = ", ".join(f"{r['row']} {100 * r[metric]:.2f}" + (f" ({r['seeds']} seeds)" if r.get("seeds", 1) > 1 else "")
                     for r in reference["rows"])
    return (f"The full benchmark ({reference['source']}, {reference['split']}: {reference['queries']} queries, full "
            f"corpus; {reference['machine']}, {reference['date']}) found {metric}: {rows}. {reference['finding']}")
