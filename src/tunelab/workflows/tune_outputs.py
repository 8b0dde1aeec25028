"""What `tunelab tune` leaves in its study folder: ``study.json``, ``best.yaml`` and plots."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import yaml

from tunelab import rundir
from tunelab.config import RunConfig, load_config
from tunelab.config.search import apply_params
from tunelab.evaluation.metrics import scalar_metrics
from tunelab.utils.io import atomic_write_json, atomic_write_text

STUDY_JSON, BEST_YAML, PLOTS = rundir.STUDY_JSON, rundir.STUDY_BEST, rundir.STUDY_PLOTS


def best_config(cfg: RunConfig, params: dict[str, Any], study_name: str) -> dict[str, Any]:
    """The best trial's complete config, to train as is: the study's config with the trial's
    parameters (as its run had them), its own output name under the original output folder,
    and no search section (wherever the trial ran, on this worker or another)."""
    base = {k: v for k, v in cfg.to_dict().items() if k != "search"}
    d = apply_params(base, params)
    d["output"] = {**d["output"], "name": f"{study_name}-best", "overwrite": False}
    d["resume"] = False
    load_config(d)  # it is valid as written
    return d


def score_best_on_test(cfg: RunConfig, run_dir: Path, console) -> dict[str, Any]:
    """The test split, scored for the best trial only (written to its ``eval/``)."""
    from tunelab.workflows.runs import evaluate_to_file

    metrics, path = evaluate_to_file(run_dir, file=cfg.data.test)
    scores = scalar_metrics(metrics)
    if console:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in scores.items() if k != "n")
        console.print(f"[bold]best trial on test ({cfg.data.test}):[/] {shown}")
    return {"file": cfg.data.test, "metrics": scores, "eval": str(path)}


def write_plots(study, folder: Path, names: list[str]) -> dict[str, str]:
    """Optuna's matplotlib plots as PNGs: history, importances, parallel coordinates, and the
    Pareto front for several objectives. A plot Optuna cannot draw yet (too few trials) is
    left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ov

    folder.mkdir(parents=True, exist_ok=True)
    multi = len(names) > 1
    first = (
        {"target": (lambda t: t.values[0]), "target_name": names[0]}
        if multi
        else {"target_name": names[0]}
    )
    makers = {
        "history": lambda: ov.plot_optimization_history(study, **first),
        "importances": lambda: ov.plot_param_importances(study, **first),
        "parallel_coordinates": lambda: ov.plot_parallel_coordinate(study, **first),
    }
    if multi:
        makers["pareto_front"] = lambda: ov.plot_pareto_front(study, target_names=names)
    out: dict[str, str] = {}
    for name, make in makers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = make()
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        path = folder / f"{name}.png"
        tmp = path.with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=90, bbox_inches="tight")
        plt.close(fig)
        tmp.replace(path)
        out[name] = str(path.relative_to(folder.parent))
    return out


def write_outputs(
    cfg: RunConfig,
    study,
    study_dir: Path,
    name: str,
    storage: str,
    n_trials: int,
    trials: list[dict[str, Any]],
    best: list[dict[str, Any]],
    best_test: dict[str, Any] | None,
    names: list[str],
    directions: list[str],
) -> dict[str, str]:
    """``study.json``, ``best.yaml`` (one objective) and the plots; returns their paths."""
    files: dict[str, str] = {}
    if best:
        atomic_write_text(
            study_dir / BEST_YAML,
            yaml.safe_dump(best_config(cfg, best[0]["params"], name), sort_keys=False),
        )
        files["best"] = str(study_dir / BEST_YAML)
    plots = write_plots(study, study_dir / PLOTS, names)
    record = {
        "study": name,
        "storage": storage,
        "n_trials": n_trials,
        "objectives": names,
        "directions": directions,
        "sampler": cfg.search.sampler,
        "pruner": cfg.search.pruner or ("none" if cfg.search.multi else "median"),
        "validation": cfg.data.validation
        or f"held out from train: {cfg.data.validation_fraction:.0%}, seed {cfg.training.seed}",
        "counts": {
            s: sum(t["state"] == s for t in trials)
            for s in ("complete", "pruned", "fail", "running")
        },
        "best": [t["number"] for t in best],
        "best_test": best_test,
        "plots": plots,
        "trials": trials,
    }
    atomic_write_json(study_dir / STUDY_JSON, record)
    files["study"] = str(study_dir / STUDY_JSON)
    files.update({f"plot:{k}": str(study_dir / v) for k, v in plots.items()})
    return files
