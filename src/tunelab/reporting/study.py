"""The study part of `tunelab report STUDY`: the trials table and Optuna's plots."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from tunelab import rundir


def study_run_dirs(study_dir: Path, study: dict[str, Any]) -> list[Path]:
    """The run directories of a study's trials that hold a run (in trial order, once each)."""
    dirs = [study_dir / t["run_dir"] for t in study["trials"] if t.get("run_dir")]
    return [d for d in dict.fromkeys(dirs) if rundir.is_run_dir(d)]


def study_html(study_dir: Path, study: dict[str, Any], table) -> list[str]:
    """HTML parts: a summary line, the trials table (the best marked) and each plot."""
    names = study["objectives"]
    params = list(dict.fromkeys(k for t in study["trials"] for k in t["params"]))
    rows = []
    for t in study["trials"]:
        state = t["state"] + (f" at step {t['pruned']['step']}" if t.get("pruned") else "")
        rows.append(
            [
                f"{t['number']}{' ★' if t['number'] in study['best'] else ''}",
                state,
                *[t["params"].get(k, "—") for k in params],
                *[(t["values"] or {}).get(k, "—") for k in names],
                t.get("steps") or "—",
                t.get("duration_s") or "—",
                t.get("run_dir") or "",
            ]
        )
    c = study["counts"]
    parts = [
        f"<h2>Study {html.escape(study['study'])}</h2>",
        f"<p>{c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed of "
        f"{study['n_trials']} · objective(s) {html.escape(', '.join(names))} "
        f"({', '.join(study['directions'])}) · sampler {study['sampler']} · pruner "
        f"{study['pruner']} · validation: {html.escape(str(study['validation']))}</p>",
        table(["trial", "state", *params, *names, "steps", "seconds", "run"], rows),
    ]
    test = study.get("best_test")
    if test:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in test["metrics"].items() if k != "n")
        parts.append(
            f"<p>Best trial on test ({html.escape(str(test['file']))}, scored for it alone): "
            f"{html.escape(shown)}</p>"
        )
    for name, rel in study.get("plots", {}).items():
        path = study_dir / rel
        if path.is_file():
            uri = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
            title = f"{study['study']}: {name.replace('_', ' ')}"
            parts.append(
                f"<figure><img alt='{html.escape(title)}' src='{uri}'>"
                f"<figcaption>{html.escape(title)}</figcaption></figure>"
            )
    return parts
