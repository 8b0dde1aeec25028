"""`tunelab report RUN_DIR [RUN_DIR ...]`: one self-contained HTML file.

It reads run directories only (the contract between training, evaluation and reporting):
config summary, training and validation curves, the final metrics side by side, robustness and
fairness charts from ``eval/suite-*.json``, sample predictions, and (``human``) the ratings of
exported sheets next to the automatic metrics of the same outputs, with their rank correlation.
Plots are matplotlib PNGs embedded as data URIs, so the file opens anywhere without the run
directories. A small script in the page records load errors and whether every plot decoded
(``data-plots-ok``), which the browser test reads.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from tunelab import rundir
from tunelab.errors import RunDirError
from tunelab.evaluation.human_metrics import METRICS, human_vs_metrics
from tunelab.reporting.benchmark import benchmark_html, split_benchmarks
from tunelab.reporting.study import study_html, study_run_dirs
from tunelab.utils.io import atomic_write_text

SCRIPT = """
<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e)));
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.plots = imgs.length;
  document.body.dataset.plotsOk = ok;
  document.body.dataset.errors = window.__errors.length;
  document.title = 'report ' + ok + '/' + imgs.length + ' plots, ' + window.__errors.length + ' errors';
});
</script>
"""

STYLE = """
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}h2{border-bottom:1px solid #ddd;padding-bottom:4px}
img{max-width:100%}code{background:#f4f4f4;padding:1px 4px}.pred td{text-align:left;max-width:500px}
</style>
"""


def _read_run(run_dir: Path) -> dict[str, Any]:
    return {
        "name": run_dir.name,
        "dir": str(run_dir),
        "info": rundir.read_info(run_dir),
        "metrics": rundir.read_metrics(run_dir),
        "suites": rundir.suite_results(run_dir),
        "predictions": rundir.read_predictions(run_dir, "validation", limit=8),
        "config": rundir.read_config_text(run_dir),
    }


def _read_inputs(paths) -> tuple[list[dict[str, Any]], list[tuple[Path, dict[str, Any]]]]:
    """The runs and the `tunelab tune` studies named: a study brings its trials' runs."""
    studies = [(Path(d), rundir.read_study(d)) for d in paths if rundir.is_study_dir(d)]
    dirs = [Path(d) for d in paths if not rundir.is_study_dir(d)]
    dirs += [r for d, s in studies for r in study_run_dirs(d, s)]
    return [_read_run(d) for d in dirs], studies


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _curves(runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    fig, ax = plt.subplots(figsize=(7, 3.5))
    drawn = False
    for r in runs:
        pts = [(m["step"], m["loss"]) for m in r["metrics"] if m.get("type") == "train"]
        if pts:
            ax.plot(*zip(*pts), label=r["name"])
            drawn = True
    if drawn:
        ax.set(xlabel="step", ylabel="training loss", title="training loss")
        ax.legend(fontsize=8)
        out.append(("training loss", _png(fig)))
    else:
        plt.close(fig)
    metric_names = {r["info"].get("summary", {}).get("metric") for r in runs} - {None}
    for metric in sorted(metric_names):
        fig, ax = plt.subplots(figsize=(7, 3.5))
        drawn = False
        for r in runs:
            pts = [
                (m["step"], m[metric])
                for m in r["metrics"]
                if m.get("type") == "eval" and metric in m
            ]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=r["name"])
                drawn = True
        if drawn:
            ax.set(xlabel="step", ylabel=metric, title=f"validation {metric}")
            ax.legend(fontsize=8)
            out.append((f"validation {metric}", _png(fig)))
        else:
            plt.close(fig)
    return out


def _grouped_bars(
    ax,
    labels: list[str],
    series: dict[str, list[float | None]],
    errors: dict[str, list[list[float]]] | None = None,
    colors=None,
) -> None:
    """One group of bars per label, one bar per run (a legend names the runs when several)."""
    import numpy as np

    x = np.arange(len(labels))
    width = 0.8 / max(len(series), 1)
    for k, (run, vals) in enumerate(series.items()):
        ys = [v if v is not None else 0.0 for v in vals]
        ax.bar(
            x + (k - (len(series) - 1) / 2) * width,
            ys,
            width,
            label=run,
            yerr=(errors or {}).get(run),
            capsize=4 if errors else 0,
            color=colors if len(series) == 1 and colors else None,
        )
    ax.set_xticks(x, [lbl.replace(":", ":\n").replace("-", "-\n") for lbl in labels])
    if len(series) > 1:
        ax.legend(fontsize=8)


def _suite_tasks(runs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """Suite results by (suite, task), then by run: what one chart or table compares."""
    tasks: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in runs:
        for sname, res in r["suites"].items():
            for tname, e in res.get("tasks", {}).items():
                tasks.setdefault((sname, tname), {})[r["name"]] = e
    return tasks


def _suite_charts(runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """One chart per suite task; runs that share a task are compared in the same chart."""
    import matplotlib.pyplot as plt

    out = []
    for (sname, tname), entries in _suite_tasks(runs).items():
        first = next(iter(entries.values()))
        who = " vs ".join(entries) if len(entries) > 1 else next(iter(entries))
        kind = first.get("kind", "task")
        fig, ax = plt.subplots(figsize=(8, 3.2))
        if kind == "task" and (first.get("robustness") or {}).get("perturbations"):
            labels = ["clean", *first["robustness"]["perturbations"], "worst case"]
            series = {}
            for run, e in entries.items():
                rob = e.get("robustness") or {}
                per = rob.get("perturbations", {})
                series[run] = [
                    e["clean"].get(e["metric"]),
                    *[per.get(k) for k in labels[1:-1]],
                    rob.get("worst_case"),
                ]
            colors = ["#4a7"] + ["#68c"] * (len(labels) - 2) + ["#c55"]
            _grouped_bars(ax, labels, series, colors=colors)
            ax.tick_params(axis="x", rotation=30)
            ax.set(ylabel=first["metric"], title=f"{sname}/{tname}: robustness · {who}")
            title = f"robustness {sname}/{tname}"
        elif kind == "counterfactual":
            attrs = [k for k, v in first["attributes"].items() if v.get("n")]
            if not attrs:
                plt.close(fig)
                continue
            series = {
                run: [e["attributes"].get(a, {}).get("flip_rate") for a in attrs]
                for run, e in entries.items()
            }
            _grouped_bars(ax, attrs, series)
            ax.set(ylabel="flip rate", title=f"{tname}: counterfactual flips · {who}")
            title = f"fairness {sname}/{tname}"
        elif kind == "eec":
            keys = ["gender_gap_female_minus_male", "race_gap_african_american_minus_european"]
            series, errs = {}, {}
            for run, e in entries.items():
                gaps = [e[k]["gap"] for k in keys]
                series[run] = gaps
                errs[run] = [
                    [g - e[k]["ci_low"] for g, k in zip(gaps, keys)],
                    [e[k]["ci_high"] - g for g, k in zip(gaps, keys)],
                ]
            _grouped_bars(ax, ["gender (F−M)", "race (AA−EA)"], series, errs)
            ax.axhline(0, color="#333", lw=0.8)
            ax.set(ylabel=f"Δ P({first['score_label']})", title=f"EEC gaps (95% CI) · {who}")
            title = f"eec {sname}/{tname}"
        elif kind == "crows_pairs":
            types = list(first["by_bias_type"])
            series = {
                run: [e["by_bias_type"].get(t, {}).get("pct_stereotype") for t in types]
                for run, e in entries.items()
            }
            _grouped_bars(ax, types, series)
            ax.tick_params(axis="x", rotation=45)
            ax.axhline(50, color="#c55", lw=1)
            ax.set(ylabel="% stereotypical preferred", title=f"CrowS-Pairs · {who}")
            title = f"crows {sname}/{tname}"
        else:
            plt.close(fig)
            continue
        out.append((title, _png(fig)))
    return out


def _table(headers: list[str], rows: list[list[Any]], cls: str = "") -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "—"
        if isinstance(v, float):
            return f"{v:.4f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><tr>{head}</tr>{body}</table>'


def _suite_measures(e: dict[str, Any]):
    """(label, value) rows of one suite task's results, whatever its kind."""
    kind = e.get("kind", "task")
    if kind == "task":
        yield f"{e['metric']} · clean", e["clean"].get(e["metric"])
        rob = e.get("robustness") or {}
        for k, v in rob.get("perturbations", {}).items():
            yield f"{e['metric']} · {k}", v
        if "worst_case" in rob:
            yield f"{e['metric']} · worst case", rob["worst_case"]
        yield "n", e.get("n")
    elif kind == "counterfactual":
        for attr, v in e["attributes"].items():
            yield f"{attr}: flip rate", v.get("flip_rate")
            yield f"{attr}: mean Δp({e.get('score_label', '')})", v.get("mean_score_change")
            yield f"{attr}: n", v.get("n")
    elif kind == "eec":
        for k in ("gender_gap_female_minus_male", "race_gap_african_american_minus_european"):
            g = e[k]
            yield k, f"{g['gap']:+.4f} [{g['ci_low']:+.4f}, {g['ci_high']:+.4f}]"
    elif kind == "crows_pairs":
        yield "% stereotypical preferred", e.get("pct_stereotype")
        for t, v in e.get("by_bias_type", {}).items():
            yield f"{t}: % stereotypical", v.get("pct_stereotype")


def _ci(e: dict[str, Any]) -> str:
    if e.get("n", 0) == 0:
        return "no ratings"
    lo, hi = e["ci_low"], e["ci_high"]
    ci = "" if lo != lo else f" [{lo:.2f}, {hi:.2f}]"  # NaN: a single rating
    return f"{e['mean']:.2f}{ci}"


def _human_section(res: dict[str, Any]) -> list[str]:
    """One rating sheet: human results next to the automatic metrics of the same outputs,
    the raters' agreement, and the Spearman correlation of each metric with the humans."""
    rep, names = res["human"], {"rougeL": "ROUGE-L", "bleu": "BLEU", "chrf": "chrF"}
    crit = rep["criteria"]
    if res["mode"] == "scale":
        heads = [f"human {c} (mean, 95% CI)" for c in crit]
        human = {run: [_ci(e) for e in crit.values()] for run in res["metric_means"]}
    else:
        e = crit["preference"]
        heads = ["human win rate (95% CI)"]
        human = {
            run: [
                f"{e['win_rate'][run]:.0%} [{e['win_rate_ci'][run][0]:.0%}, "
                f"{e['win_rate_ci'][run][1]:.0%}]"
                if e.get("n")
                else "no judgements"
            ]
            for run in res["metric_means"]
        }
    rows = [
        [Path(run).name, *human[run], *[ms[m] for m in METRICS]]
        for run, ms in res["metric_means"].items()
    ]
    agree = [
        [c, e.get("krippendorff_alpha"), e.get("cohen_kappa"), e.get("n")] for c, e in crit.items()
    ]
    corr = [[c["human"], names[c["metric"]], c["rho"], c["p"], c["n"]] for c in res["correlations"]]
    best = max(
        (c for c in res["correlations"] if c["rho"] is not None),
        key=lambda c: c["rho"],
        default=None,
    )
    if best is None:
        verdict = "<p>Too few rated items for a rank correlation (at least 3, not all equal).</p>"
    elif best["rho"] <= 0:
        verdict = "<p>No metric ranks these outputs like the raters (every ρ ≤ 0).</p>"
    else:
        verdict = (
            f"<p>The metric that ranks these outputs most like the raters: "
            f"<b>{names[best['metric']]}</b> (ρ = {best['rho']:.3f} with "
            f"{html.escape(best['human'])}, p = {best['p']:.3g}, n = {best['n']}).</p>"
        )
    return [
        f"<h2>Human ratings · {html.escape(Path(res['sheet']).name)}</h2>",
        f"<p>{res['rated_items']} of {rep['items']} items rated by {len(rep['raters'])} "
        f"rater(s): {html.escape(', '.join(rep['raters']))}. Automatic metrics: means over "
        "the rated items, each output against its reference (sentence level).</p>",
        _table(["run", *heads, *[names[m] for m in METRICS]], rows),
        _table(["criterion", "Krippendorff α", "Cohen κ", "n"], agree),
        "<h3>Rank correlation with the human scores (Spearman)</h3>",
        _table(["human score", "metric", "ρ", "p", "n"], corr),
        verdict,
    ]


RUN_COLUMNS = (
    "run",
    "model",
    "method",
    "status",
    "trainable %",
    "steps",
    "examples/s",
    "peak RSS MB",
    "saved MB",
)


def build_report(
    run_dirs: list[str | Path],
    output: str | Path,
    overwrite: bool = False,
    human: list[str | Path] = (),
) -> Path:
    """Write the HTML report of ``run_dirs`` and ``human`` rating sheets; return its path."""
    out = Path(output)
    if out.exists() and not overwrite:
        raise RunDirError(f"{out} exists; pass --overwrite to replace it")
    benches, run_dirs = split_benchmarks(run_dirs)
    runs, studies = _read_inputs(run_dirs)
    sheets = [human_vs_metrics(sheet) for sheet in human]  # (before anything is drawn)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>tunelab report</title>",
        STYLE,
        SCRIPT,
        "</head><body><h1>tunelab report</h1>",
        *(p for d, s in studies for p in study_html(d, s, _table)),
    ]
    parts += [p for b in benches for p in benchmark_html(b)]
    # summary
    rows = []
    for r in runs:
        i = r["info"]
        s = i.get("summary", {})
        p = i.get("parameters", {})
        rows.append(
            [
                r["name"],
                i.get("model", {}).get("name", ""),
                i.get("method", ""),
                rundir.run_status(i),
                p.get("trainable_pct", ""),
                s.get("steps", ""),
                s.get("examples_per_s", ""),
                s.get("peak_rss_mb", ""),
                i.get("saved_model_mb", ""),
            ]
        )
    parts += [
        "<h2>Runs</h2>",
        _table(list(RUN_COLUMNS), rows),
    ]
    # metrics side by side
    keys: list[str] = []
    for r in runs:
        for k in r["info"].get("final", {}).get("validation", {}):
            if k not in keys and k != "n":
                keys.append(k)
    if keys:
        rows = []
        for k in keys:
            row: list[Any] = [k]
            for r in runs:
                before = (r["info"].get("summary", {}).get("before") or {}).get(k)
                after = r["info"].get("final", {}).get("validation", {}).get(k)
                row.append(
                    "—"
                    if after is None
                    else (f"{before:.4f} → {after:.4f}" if isinstance(before, float) else after)
                )
            rows.append(row)
        parts += [
            "<h2>Validation metrics (before → after)</h2>",
            _table(["metric", *[r["name"] for r in runs]], rows),
        ]
    # curves and charts
    plots = _curves(runs) + _suite_charts(runs)
    if plots:
        parts.append("<h2>Plots</h2>")
        for title, uri in plots:
            parts.append(
                f"<figure><img alt='{html.escape(title)}' src='{uri}'>"
                f"<figcaption>{html.escape(title)}</figcaption></figure>"
            )
    # suite tables: one per suite task, a column per run
    for (sname, tname), entries in _suite_tasks(runs).items():
        measures: dict[str, dict[str, Any]] = {}
        for run, e in entries.items():
            for label, value in _suite_measures(e):
                measures.setdefault(label, {})[run] = value
        rows = [[label, *[v.get(run) for run in entries]] for label, v in measures.items()]
        parts += [
            f"<h2>Suite {html.escape(sname)} · {html.escape(tname)}</h2>",
            _table(["measure", *entries], rows),
        ]
    parts += [html_part for res in sheets for html_part in _human_section(res)]
    # predictions
    for r in runs:
        if r["predictions"]:
            cols = [
                c
                for c in ("text", "prompt", "label", "reference", "prediction")
                if c in r["predictions"][0]
            ]
            rows = [[str(p.get(c, ""))[:300] for c in cols] for p in r["predictions"]]
            parts += [
                f"<h2>Sample predictions · {html.escape(r['name'])}</h2>",
                _table(cols, rows, "pred"),
            ]
    for r in runs:
        parts += [
            f"<h2>Config · {html.escape(r['name'])}</h2>",
            f"<pre>{html.escape(r['config'])}</pre>",
        ]
    parts.append("</body></html>")
    atomic_write_text(out, "\n".join(parts))
    return out
