"""A benchmark's chart and its part of the HTML report (the console table is in tables.py)."""

from __future__ import annotations

import html
import io
from pathlib import Path
from typing import Any

RESULTS = "benchmark.json"


def benchmark_chart(benchmark: str, rows: list[dict[str, Any]], average: float | None) -> bytes:
    """PNG bar chart of each task's score (and the average)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["task"] for r in rows] + (["Average"] if average is not None else [])
    values = [r["score"] for r in rows] + ([average] if average is not None else [])
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2, 3.2))
    bars = ax.bar(
        names, values, color=["#4c72b0"] * len(rows) + ["#dd8452"] * (len(names) - len(rows))
    )
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_ylabel("score (official metric, %)")
    ax.set_title(f"{benchmark.upper()} dev scores")
    ax.set_ylim(min(0.0, min(values) - 5), 100)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def table_rows(state: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per scored task, in the benchmark's order: title, metric names, values."""
    rows = []
    for name in state.get("order", list(state["tasks"])):
        t = state["tasks"].get(name)
        if t and t["status"] == "completed":
            rows.append(
                {
                    "task": t["title"],
                    "metric": "/".join(t["metrics"]),
                    "value": "/".join(f"{100 * v:.1f}" for v in t["metrics"].values()),
                    "score": round(t["score"], 2),
                }
            )
    return rows


def is_benchmark_dir(path: str | Path) -> bool:
    return (Path(path) / RESULTS).is_file()


def split_benchmarks(paths) -> tuple[list[Path], list[Path]]:
    """(`tunelab benchmark` folders, run directories): a benchmark folder's runs join the
    run directories."""
    from tunelab import rundir

    benches = [Path(p) for p in paths if is_benchmark_dir(p)]
    runs = [Path(p) for p in paths if not is_benchmark_dir(p)]
    runs += [r for b in benches for r in sorted((b / "runs").glob("*")) if rundir.is_run_dir(r)]
    return benches, runs


def benchmark_html(folder: Path) -> list[str]:
    """The report's section for one benchmark folder: its table and chart."""
    import base64
    import json

    state = json.loads((folder / RESULTS).read_text(encoding="utf-8"))
    rows = table_rows(state)
    head = "".join(f"<th>{h}</th>" for h in ("task", "metric", "value", "score"))
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(r[k]))}</td>" for k in ("task", "metric", "value", "score")
        )
        + "</tr>"
        for r in rows
    )
    avg = state.get("average")
    if avg is not None:
        body += f"<tr><td><b>Average</b></td><td></td><td></td><td><b>{avg:.2f}</b></td></tr>"
    skipped = [t["title"] for t in state["tasks"].values() if t["status"] != "completed"]
    parts = [
        f"<h2>Benchmark {html.escape(state['benchmark'])} · {html.escape(str(folder))}</h2>",
        f"<table><tr>{head}</tr>{body}</table>",
    ]
    if skipped:
        parts.append(f"<p>not scored: {html.escape(', '.join(skipped))}</p>")
    if rows:
        png = benchmark_chart(state["benchmark"], rows, avg)
        uri = "data:image/png;base64," + base64.b64encode(png).decode()
        parts.append(f"<figure><img alt='benchmark chart' src='{uri}'></figure>")
    return parts
