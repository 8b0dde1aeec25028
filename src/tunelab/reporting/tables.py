"""Every console table tunelab prints (rich), one function each; the CLI and workflows call them."""

from __future__ import annotations

from typing import Any

from tunelab.evaluation.metrics import (
    CLASSIFICATION_SHOWN,
    GENERATION_SHOWN,
    PRIMARY,
    PROBE_SHOWN,
)


def _table(title: str, columns: tuple[str, ...] | list[str], left: tuple[str, ...] = ()):
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(c, justify="left" if c in left else "right")
    return t


def print_result(console, summary: dict, results: dict) -> None:
    """The end of ``tunelab train``: scores before/after per split, probes, throughput."""
    from rich.table import Table

    t = Table(title="results")
    t.add_column("split")
    rows = {"validation (before)": summary["before"]} if summary.get("before") else {}
    if summary.get("before_test"):
        rows["test (before)"] = summary["before_test"]
    rows.update({f"{name} (after)": m for name, m in results.items()})
    shown = [c for c in CLASSIFICATION_SHOWN if any(c in m for m in rows.values())]
    shown = shown or [c for c in GENERATION_SHOWN if any(c in m for m in rows.values())]
    if any("/" in k for m in rows.values() for k in m):  # a mixture: one row per task score
        print_mixture(console, rows)
        shown = [c for c in ("mean", "mean_loss") if any(c in m for m in rows.values())]
    for c in shown:
        t.add_column(c, justify="right")
    for label, m in rows.items():
        t.add_row(label, *[f"{m.get(c, float('nan')):.4f}" for c in shown])
    console.print(t)
    if summary.get("probes"):
        cols = ("probe", "metric", "before", "after", "delta")
        pt = _table("probes (forgetting): before → after (delta)", cols, ("probe", "metric"))
        for name, p in summary["probes"].items():
            for k, d in p["delta"].items():
                if k in PROBE_SHOWN:
                    b, a = p["before"][k], p["after"][k]
                    pt.add_row(name, k, f"{b:.4f}", f"{a:.4f}", f"{d:+.4f}")
        console.print(pt)
    console.print(
        f"{summary['steps']} steps · {summary['examples_per_s']:.1f} train examples/s · "
        f"peak RSS {summary['peak_rss_mb']:.0f} MB · skipped steps {summary['skipped_steps']}"
    )


def print_mixture(console, rows: dict[str, dict]) -> None:
    """One row per mixture task and score, a column per split."""
    from rich.table import Table

    keep = {"loss", "accuracy", *PRIMARY.values()}
    keys = list(dict.fromkeys(k for m in rows.values() for k in m if "/" in k))
    t = Table(title="tasks")
    t.add_column("task")
    t.add_column("metric")
    for label in rows:
        t.add_column(label, justify="right")
    for k in keys:
        task, metric = k.rsplit("/", 1)
        if metric in keep:
            t.add_row(task, metric, *[f"{m[k]:.4f}" if k in m else "—" for m in rows.values()])
    console.print(t)


def print_retention(console, stage: str, retention: dict[str, dict[str, Any]]) -> None:
    """Earlier stages' validation scores at their own end and after ``stage``."""
    cols = ("stage", "metric", "at its end", "now", "delta")
    t = _table(f"earlier stages after stage {stage!r} (forgetting)", cols, ("stage", "metric"))
    for name, r in retention.items():
        if "skipped" in r:
            t.add_row(name, "—", "", "", r["skipped"])
            continue
        for k, d in r["delta"].items():
            if k in CLASSIFICATION_SHOWN or k in GENERATION_SHOWN:
                t.add_row(name, k, f"{r['at_own_end'][k]:.4f}", f"{r['now'][k]:.4f}", f"{d:+.4f}")
    console.print(t)


def print_classification_eval(console, title: str, m: dict[str, Any], written: str) -> None:
    """Per-class precision/recall/F1 of ``tunelab eval`` on a classification run."""
    cols = ("label", "precision", "recall", "f1", "support")
    t = _table(title, cols, ("label",))
    for name, pc in m["per_class"].items():
        t.add_row(
            name,
            f"{pc['precision']:.4f}",
            f"{pc['recall']:.4f}",
            f"{pc['f1']:.4f}",
            str(pc["support"]),
        )
    t.add_row(
        "macro",
        f"{m['precision_macro']:.4f}",
        f"{m['recall_macro']:.4f}",
        f"{m['f1_macro']:.4f}",
        str(m["n"]),
    )
    console.print(t)
    console.print(f"accuracy {m['accuracy']:.4f} · written to {written}")


def print_human(console, rep: dict[str, Any]) -> None:
    """``tunelab human import``: each criterion's result and the raters' agreement."""
    title = f"human ratings · {len(rep['raters'])} rater(s) · {rep['items']} items"
    cols = ("criterion", "result", "krippendorff α", "cohen κ")
    t = _table(title, cols, cols)
    for name, e in rep["criteria"].items():
        if "mean" in e:
            res = f"{e['mean']:.2f} [{e['ci_low']:.2f}, {e['ci_high']:.2f}] (n={e['n']})"
        elif "win_rate" in e:
            ci = e.get("win_rate_ci", {})
            res = ", ".join(
                f"{k}: {v:.0%}" + (f" [{ci[k][0]:.0%}, {ci[k][1]:.0%}]" if k in ci else "")
                for k, v in e["win_rate"].items()
            )
        else:
            res = "no ratings"
        alpha, kappa = e.get("krippendorff_alpha"), e.get("cohen_kappa")
        t.add_row(
            name,
            res,
            "—" if alpha is None else f"{alpha:.3f}",
            "—" if kappa is None else f"{kappa:.3f}",
        )
    console.print(t)


def print_compare(console, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    """``tunelab compare``: one row per method run."""
    t = _table("methods compared", columns, ("method",))
    for r in rows:
        if "error" in r:
            t.add_row(r["method"], f"failed: {r['error']}", *[""] * (len(columns) - 2))
            continue
        t.add_row(
            r["method"],
            f"{r['lr']:g}",
            f"{r['metric']:.4f}",
            f"{r['trainable_pct']:.3f}",
            f"{r['train_seconds']:.1f}",
            f"{r['examples_per_s']:.1f}",
            f"{r['peak_rss_mb']:.0f}",
            f"{r['saved_mb']:.2f}",
        )
    console.print(t)


def print_models(console, models: list[dict[str, Any]]) -> None:
    """``tunelab models``: the embedded models and whether they are installed."""
    cols = ("name", "kind", "installed", "converted cache", "description / install")
    t = _table("embedded models", cols, cols)
    for m in models:
        t.add_row(
            m["name"],
            m["kind"],
            "yes" if m["installed"] else "no",
            "yes" if m["cached"] else "-",
            m["description"] if m["installed"] else m["install"],
        )
    console.print(t)


def print_suite(console, results: dict[str, Any]) -> None:
    """One row per task and condition (clean, each perturbation, worst case): stays narrow."""
    from rich.table import Table

    t = Table(title=f"suite {results['suite']} · {results['target']}")
    for c in ("task", "metric", "n", "condition", "score"):
        t.add_column(c, justify="left" if c in ("task", "metric", "condition") else "right")
    fair = {n: e for n, e in results["tasks"].items() if e.get("kind", "task") != "task"}
    for name, e in results["tasks"].items():
        if name in fair:
            continue
        rb = e.get("robustness", {})
        rows = [("clean", e["clean"].get(e["metric"]))]
        rows += list(rb.get("perturbations", {}).items())
        if rb.get("worst_case") is not None:
            rows.append(("worst case", rb["worst_case"]))
        for i, (cond, v) in enumerate(rows):
            t.add_row(
                name if i == 0 else "",
                e["metric"] if i == 0 else "",
                str(e["n"]) if i == 0 else "",
                cond,
                "—" if v is None else f"{v:.4f}",
            )
    if len(fair) < len(results["tasks"]):
        console.print(t)
    if fair:
        ft = Table(title="fairness")
        for c in ("task", "measure", "value", "95% CI / n"):
            ft.add_column(c, justify="left" if c in ("task", "measure") else "right")
        for name, e in fair.items():
            for measure, value, extra in _fair_rows(e):
                ft.add_row(name, measure, value, extra)
        console.print(ft)


def _fair_rows(e: dict[str, Any]):
    if e["kind"] == "crows_pairs":
        yield "pct_stereotype (all)", f"{e['pct_stereotype']:.1f}", f"n={e['n']}"
        for k, v in e["by_bias_type"].items():
            yield f"pct_stereotype ({k})", f"{v['pct_stereotype']:.1f}", f"n={v['n']}"
    elif e["kind"] == "eec":
        for key in ("gender_gap_female_minus_male", "race_gap_african_american_minus_european"):
            g = e[key]
            yield key, f"{g['gap']:+.4f}", f"[{g['ci_low']:+.4f}, {g['ci_high']:+.4f}]"
    else:
        for attr, v in e["attributes"].items():
            if v["n"]:
                yield f"{attr}: flip rate", f"{v['flip_rate']:.4f}", f"n={v['n']}"
                yield f"{attr}: mean Δp({e['score_label']})", f"{v['mean_score_change']:+.4f}", ""


def print_benchmark(console, state: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The benchmark table as papers print it: a column per task, then the average."""
    t = _table(f"{state['benchmark'].upper()} (dev)", ["", *[r["task"] for r in rows], "Avg"])
    t.add_row("metric", *[r["metric"].replace("accuracy", "acc") for r in rows], "")
    avg = state.get("average")
    t.add_row("score", *[r["value"] for r in rows], "" if avg is None else f"{avg:.1f}")
    console.print(t)
    notes = [
        f"{x['title']}: {x['status']}"
        for x in state["tasks"].values()
        if x["status"] != "completed"
    ]
    if notes:
        console.print("not scored: " + "; ".join(notes))


def print_study(console, trials: list[dict[str, Any]], best: list[int], test=None) -> None:
    """``tunelab tune``: one row per trial (params, values, state), the best marked."""
    params = [k for t in trials for k in t["params"]]
    params = list(dict.fromkeys(params))
    values = list(dict.fromkeys(k for t in trials for k in (t["values"] or {})))
    cols = ["trial", "state", *params, *values, "steps", "seconds", "run"]
    t = _table("trials", cols, ("trial", "state", "run"))
    for r in trials:
        mark = " *" if r["number"] in best else ""
        state = r["state"] + (f" @{r['pruned']['step']}" if r.get("pruned") else "")
        t.add_row(
            f"{r['number']}{mark}",
            state,
            *[_fmt(r["params"].get(k, "—")) for k in params],
            *[_fmt((r["values"] or {}).get(k, "—")) for k in values],
            str(r.get("steps") or "—"),
            _fmt(r.get("duration_s") or "—"),
            str(r.get("run_dir") or ""),
        )
    console.print(t)
    if best:
        console.print(f"* best trial{'s (Pareto front)' if len(best) > 1 else ''}: {best}")
    if test:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in test["metrics"].items() if k != "n")
        console.print(f"best trial on test (scored for it alone): {shown}")


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
