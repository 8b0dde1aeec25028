"""Evaluation suites: ``tunelab eval TARGET --suite SUITE.yaml``.

A suite is a YAML list of tasks (data file, task settings, how many rows), plus optional
robustness settings. TARGET is a finished run (its model, with its head) or a model name (a
language model, scored by generation, log-likelihood choice or perplexity). Each task reports
its clean scores; with ``robustness.perturbations``, it is scored again with each perturbation
applied to its inputs (never to the references), and the worst case per example is aggregated
as HELM does (an example counts as right only if it is right under every perturbation).
"""

from __future__ import annotations

import json
import random
import time
import zlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from tunelab.config import Section, _format_validation_error
from tunelab.errors import ConfigError, DataError
from tunelab.utils.io import atomic_write_json, atomic_write_jsonl


class SuiteTask(Section):
    name: str = Field(description="Task name in the results.")
    kind: Literal["task", "counterfactual", "eec", "crows_pairs"] = Field(
        "task",
        description="`task`: score the data with its metric; fairness: `counterfactual` "
        "(classifier; swapped group terms), `eec` (classifier; Equity Evaluation Corpus gaps), "
        "`crows_pairs` (language model; stereotype preference).",
    )
    attributes: list[str] | dict[str, dict[str, str]] = Field(
        default_factory=lambda: [
            "gender",
            "names:male-female",
            "names:european_american-african_american",
        ],
        description="counterfactual: swaps by name (gender, names:A-B) or your own "
        "{attribute: {word: replacement}} tables.",
    )
    score_label: str | None = Field(
        None,
        description="Fairness on classifiers: the label whose probability is compared "
        "(default: the last label, e.g. positive).",
    )
    data: str = Field(description="Data file (or hub:ID); relative paths: from the suite file.")
    split: str = Field("test", description="Hub split.")
    task: dict[str, Any] = Field(
        default_factory=dict,
        description="Task settings (the `task` section of a run config, e.g. {type: "
        "generation, format: template, template: yesno, metrics: [choice], choices: [no, yes]}).",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Classification: {text: COLUMN, text_pair: COLUMN, label: COLUMN}.",
    )
    max_examples: int | None = Field(None, ge=1, description="Score a seeded subset this size.")
    robustness: bool = Field(True, description="Include this task in the robustness runs.")


class RobustnessSettings(Section):
    perturbations: list[str] = Field(
        default_factory=list, description="Perturbations (see tunelab.evaluation.perturb)."
    )
    strength: float = Field(0.1, ge=0, le=1, description="Share of words/characters touched.")
    seed: int = Field(0, description="Seed of the noise.")


class Suite(Section):
    name: str
    tasks: list[SuiteTask]
    robustness: RobustnessSettings = Field(default_factory=RobustnessSettings)
    max_length: int | None = Field(None, ge=8, description="Tokens per example (default: run's).")
    seed: int = Field(0, description="Seed for subsets.")


def load_suite(path: str | Path) -> tuple[Suite, Path]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"suite file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        suite = Suite.model_validate(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p} is not valid YAML: {e}") from None
    except ValidationError as e:
        raise ConfigError(
            _format_validation_error(e).replace("invalid config", f"invalid suite {p}")
        ) from None
    from tunelab.evaluation.perturb import PERTURBATIONS

    bad = [k for k in suite.robustness.perturbations if k not in PERTURBATIONS]
    if bad:
        raise ConfigError(
            f"{p}: robustness.perturbations {bad}; allowed: {', '.join(PERTURBATIONS)}"
        )
    return suite, p.parent


# -- the target --------------------------------------------------------------------------------
class Target:
    """What a suite scores: a model (with its tokenizer and accelerator) and its task kind."""

    def __init__(self, target: str, trust_remote_code: bool = False):
        from tunelab.api import load_run

        path = Path(target)
        self.name = path.name if path.is_dir() else target
        if (path / "run.json").is_file():
            run = load_run(path, trust_remote_code)
            self.run, self.cfg, self.model = run, run.config, run.model
            self.accelerator, self.task = run.accelerator, run.task
            self.kind = run.task.kind
            self.tokenizer = run.task.tokenizer
            self.out_dir = path / "eval"
        else:
            self._load_model(target, trust_remote_code)

    def _load_model(self, name: str, trust_remote_code: bool) -> None:
        from tunelab.api import make_accelerator
        from tunelab.config import load_config
        from tunelab.models.loading import load_tokenizer
        from tunelab.models.registry import resolve_model
        from tunelab.tasks.generation import GenerationTask

        self.run = None
        self.cfg = load_config(
            {
                "model": {"name": name, "trust_remote_code": trust_remote_code},
                "task": {"type": "generation"},
                "training": {"progress": False},
            }
        )
        resolved = resolve_model(name, None)
        self.tokenizer = load_tokenizer(resolved, trust_remote_code)
        self.task = GenerationTask.from_config(self.cfg, None, self.tokenizer)
        try:
            model = self.task.build_model(resolved, trust_remote_code)
        except Exception as e:  # an encoder has no LM head: transformers raises ValueError
            raise ConfigError(
                f"{name} is not a language model ({type(e).__name__}); a classifier is "
                "evaluated through a finished run: tunelab eval RUN_DIR --suite ..."
            ) from None
        self.accelerator = make_accelerator(self.cfg)
        self.model = self.accelerator.prepare(model).eval()
        self.kind = "generation"
        self.out_dir = None


def _task_for(target: Target, st: SuiteTask, suite: Suite):
    """The tunelab task that scores ``st`` on ``target``."""
    from tunelab.config import load_config

    kind = st.task.get(
        "type", "classification" if target.kind == "classification" else "generation"
    )
    if kind == "classification":
        if target.kind != "classification":
            raise ConfigError(
                f"suite task {st.name!r} is a classification task: it needs a finished "
                "classification run as the target (its head), not a language model"
            )
        import copy

        task = copy.copy(target.task)
        for key, attr in (("text", "text_column"), ("text_pair", "text_pair_column"),
                          ("label", "label_column")):  # fmt: skip
            if key in st.columns:
                setattr(task, attr, st.columns[key])
        if suite.max_length:
            task.max_length = suite.max_length
        return task
    if target.kind == "classification":
        raise ConfigError(f"suite task {st.name!r} is a {kind} task; this target is a classifier")
    from tunelab.tasks.generation import GenerationTask

    base = target.cfg.to_dict()
    base["task"] = {**st.task, "type": "generation"}
    base["data"] = {"labels": st.task.get("labels")} if st.task.get("labels") else {}
    base["task"].pop("labels", None)
    if suite.max_length:
        base["model"]["max_length"] = suite.max_length
    for key in ("mixture", "probes", "stages"):
        base.pop(key, None)
    base["training"]["metric"] = None
    try:
        cfg = load_config(base)
    except ConfigError as e:
        raise ConfigError(f"suite task {st.name!r}: {e}") from None
    task = GenerationTask.from_config(cfg, None, target.tokenizer)
    return task


def _perturbed(table, columns: list[str], kind: str, strength: float, seed: int):
    from tunelab.data.sources import Table
    from tunelab.evaluation.perturb import perturb

    rows = [dict(r) for r in table.rows]
    for col in columns:
        idx = [i for i, r in enumerate(rows) if isinstance(r.get(col), str)]
        noisy = perturb(
            [rows[i][col] for i in idx], kind, strength, seed + zlib.crc32(col.encode())
        )
        for i, t in zip(idx, noisy):
            rows[i][col] = t
    return Table(table.source, table.columns, rows, list(table.row_ids), list(table.skipped))


def example_scores(task, rows: list[dict[str, Any]]) -> dict[int, float] | None:
    """Per-example correctness (1/0, or SQuAD F1 in [0, 1]) by source row, where the task's
    main metric has one; None otherwise (rouge/bleu are corpus-level here)."""
    if task.kind == "classification":
        return {r["row"]: float(r["correct"]) for r in rows}
    metrics = task.s["metrics"]
    if "choice" in metrics:
        return {
            r["row"]: float(str(r["choice"]).strip().lower() == str(r["reference"]).strip().lower())
            for r in rows
        }
    if "squad" in metrics:
        from tunelab.evaluation.generation_metrics import _f1

        return {
            r["row"]: max(_f1(r["prediction"], x) for x in
                          (r["reference"] if isinstance(r["reference"], list) else [r["reference"]]))
            for r in rows
        }  # fmt: skip
    if "exact_match" in metrics:
        return {
            r["row"]: float(r["prediction"].strip() == str(r["reference"]).strip()) for r in rows
        }
    return None


def main_metric(task) -> str:
    """The score a suite reports for ``task``: as a mixture's mean would pick it."""
    from tunelab.tasks.mixture import PRIMARY

    if task.kind == "classification":
        return "accuracy"
    metrics = task.s["metrics"]
    return PRIMARY[metrics[0]] if metrics else "perplexity"


def run_suite(
    target: str,
    suite_path: str | Path,
    output: str | Path | None = None,
    batch_size: int | None = None,
    trust_remote_code: bool = False,
    console=None,
) -> dict[str, Any]:
    """Score ``target`` on every task of the suite; write and return the results."""
    from tunelab.data.augment import input_columns
    from tunelab.data.sources import read_table

    suite, base_dir = load_suite(suite_path)
    t = Target(target, trust_remote_code)
    out_dir = Path(output) if output else (t.out_dir or Path("runs") / f"eval-{t.name}")
    bs = batch_size or t.cfg.training.eval_batch_size or 2 * t.cfg.training.batch_size
    rob = suite.robustness
    results: dict[str, Any] = {"suite": suite.name, "target": target, "tasks": {}}
    t0 = time.perf_counter()

    def say(what: str) -> None:  # one line per step: suites on a CPU take minutes
        if console is not None and t.accelerator.is_main_process:
            console.print(f"[dim]{time.perf_counter() - t0:7.1f}s  {suite.name}: {what}[/dim]")

    for st in suite.tasks:
        src = st.data if st.data.startswith("hub:") else str((base_dir / st.data).resolve())
        if not st.data.startswith("hub:") and not Path(src).exists():
            raise DataError(f"suite task {st.name!r}: data file not found: {src}")
        table = read_table(src, split=st.split, on_error="skip", defer=False)
        if st.max_examples and len(table) > st.max_examples:
            idx = sorted(random.Random(f"{suite.seed}:{st.name}").sample(range(len(table)),
                                                                           st.max_examples))  # fmt: skip
            table = table.subset(idx, table.skipped)
        say(f"{st.name} ({st.kind}, {len(table)} rows)")
        if st.kind != "task":
            results["tasks"][st.name] = _fairness(t, st, table, bs, suite.seed)
            continue
        task = _task_for(t, st, suite)
        split = task.table_to_split(table, st.name, on_error="skip")
        metrics, rows = task.evaluate(t.model, split, bs, t.accelerator)
        key = main_metric(task)
        entry: dict[str, Any] = {"metric": key, "clean": metrics, "n": len(split),
                                 "skipped_rows": len(split.skipped)}  # fmt: skip
        _save_rows(out_dir, f"suite-{suite.name}-{st.name}", rows)
        columns = input_columns(task)  # the inputs, never the references
        if rob.perturbations and st.robustness and columns:
            per: dict[str, Any] = {}
            worst = example_scores(task, rows)
            for kind in rob.perturbations:
                say(f"{st.name} under {kind}")
                noisy = task.table_to_split(_perturbed(table, columns, kind, rob.strength, rob.seed),
                                            f"{st.name}-{kind}", on_error="skip")  # fmt: skip
                m, prow = task.evaluate(t.model, noisy, bs, t.accelerator)
                per[kind] = m.get(key)
                _save_rows(out_dir, f"suite-{suite.name}-{st.name}-{kind}", prow)
                scores = example_scores(task, prow)
                if worst is not None and scores is not None:
                    worst = {r: min(v, scores[r]) for r, v in worst.items() if r in scores}
            entry["robustness"] = {
                "perturbations": per,
                "strength": rob.strength,
                "seed": rob.seed,
                "columns": columns,
            }
            if worst:
                scale = 1.0 if task.kind == "classification" else 100.0
                entry["robustness"]["worst_case"] = scale * sum(worst.values()) / len(worst)
        results["tasks"][st.name] = entry
    results["seconds"] = round(time.perf_counter() - t0, 1)
    if t.accelerator.is_main_process:
        atomic_write_json(out_dir / f"suite-{suite.name}.json", results)
    results["_written"] = str(out_dir / f"suite-{suite.name}.json")
    if console is not None:
        print_suite(console, results)
    return results


def _fairness(t: Target, st: SuiteTask, table, bs: int, seed: int) -> dict[str, Any]:
    from tunelab.evaluation import fairness

    if st.kind == "crows_pairs":
        if t.kind == "classification":
            raise ConfigError(f"suite task {st.name!r}: crows_pairs scores language models")
        rep = fairness.crows_pairs_report(t.model, t.tokenizer, table.rows, bs, t.accelerator,
                                          getattr(t.task, "seq2seq", False))  # fmt: skip
        return {"kind": st.kind, "metric": "pct_stereotype", **rep}
    if t.kind != "classification":
        raise ConfigError(
            f"suite task {st.name!r}: {st.kind} compares a classifier's predictions; the "
            "target must be a finished classification run"
        )
    if st.kind == "eec":
        rep = fairness.eec_report(t.task, t.model, table.rows, bs, t.accelerator,
                                  st.score_label, seed)  # fmt: skip
        return {"kind": st.kind, "metric": "gap", **rep}
    column = st.columns.get("text", t.task.text_column)
    if column not in table.columns:
        raise DataError(
            f"suite task {st.name!r}: column {column!r} not found; columns are: "
            f"{', '.join(table.columns)}"
        )
    texts = [r[column] for r in table.rows if isinstance(r.get(column), str)]
    rep = fairness.counterfactual_report(t.task, t.model, texts, st.attributes, bs,
                                         t.accelerator, st.score_label)  # fmt: skip
    return {"kind": st.kind, "metric": "flip_rate", **rep}


def _save_rows(out_dir: Path, name: str, rows: list[dict[str, Any]]) -> None:
    if rows:
        atomic_write_jsonl(out_dir.parent / "predictions" / f"{name}.jsonl"
                           if out_dir.name == "eval" else out_dir / f"{name}.jsonl", rows)  # fmt: skip


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
            t.add_row(name if i == 0 else "", e["metric"] if i == 0 else "",
                      str(e["n"]) if i == 0 else "", cond,
                      "—" if v is None else f"{v:.4f}")  # fmt: skip
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


def dumps(results: dict[str, Any]) -> str:
    return json.dumps(results, indent=2, default=str)
