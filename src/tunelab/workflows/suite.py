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

from tunelab import rundir
from tunelab.config import Section, format_validation_error, load_config
from tunelab.data.augment import input_columns
from tunelab.data.crows_pairs import seeded_half
from tunelab.data.dialogue import hh_messages
from tunelab.data.sources import Table, read_table
from tunelab.data.wikitext import page_rows
from tunelab.errors import ConfigError, DataError
from tunelab.evaluation import fairness
from tunelab.evaluation.generation_metrics import token_f1
from tunelab.evaluation.metrics import headline_metric
from tunelab.evaluation.perturb import check_perturbations, perturb
from tunelab.reporting.tables import print_suite
from tunelab.tasks.generation import GenerationTask
from tunelab.utils.io import atomic_write_json, atomic_write_jsonl
from tunelab.utils.memory import retain_freed_memory
from tunelab.workflows.classifier_metric import (
    headline,
    is_classifier_metric,
    parse_classifier_metric,
    score_generations,
)
from tunelab.workflows.generate import load_generation_target


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
        "generation, format: template, template: yesno, metrics: [choice], choices: [no, yes]}); "
        "`metrics` may also hold `classifier:RUN_DIR[:LABEL[+LABEL]]`: a finished "
        "classification run labels each generated answer (relative to the suite file).",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Classification: {text: COLUMN, text_pair: COLUMN, label: COLUMN}.",
    )
    max_examples: int | None = Field(None, ge=1, description="Score a seeded subset this size.")
    limit: int | None = Field(
        None, ge=1, description="Score only the first N rows (lm-evaluation-harness's --limit)."
    )
    prepare: Literal["none", "wikitext_pages", "hh_dialogue"] = Field(
        "none",
        description="`wikitext_pages`: the rows are the lines of a WikiText file; score them "
        "as pages (columns `page` as written, `text` detokenized), as lm-eval's wikitext task. "
        "`hh_dialogue`: HH-RLHF rows; their `prompt` transcript becomes chat `messages` "
        "(`chosen` as the last, reference answer), for `task: {format: chat}`.",
    )
    robustness: bool = Field(True, description="Include this task in the robustness runs.")
    half: Literal["train", "test"] | None = Field(
        None,
        description="Score one seeded half of the rows only (before limit/max_examples): "
        "`test` is the half that `tunelab data crows-pairs --half train` leaves out of its "
        "preference pairs, with the same seed (`half_seed`).",
    )
    half_seed: int = Field(0, description="Seed of the halves (`tunelab data ... --seed`).")


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
        raise ConfigError(format_validation_error(e, head=f"invalid suite {p}: ")) from None
    check_perturbations(suite.robustness.perturbations, f"{p}: robustness.perturbations")
    return suite, p.parent


# -- the target --------------------------------------------------------------------------------
class Target:
    """What a suite scores: a model (with its tokenizer and accelerator) and its task kind."""

    def __init__(self, target: str, trust_remote_code: bool = False, precision: str | None = None):
        path = Path(target)
        self.name = path.name if path.is_dir() else target
        t = load_generation_target(target, trust_remote_code, True, precision)
        self.run, self.cfg, self.model = t.run, t.config, t.model
        self.accelerator, self.task, self.tokenizer = t.accelerator, t.task, t.tokenizer
        self.kind = t.task.kind
        self.out_dir = path / rundir.EVAL if t.run is not None else None


def _task_for(target: Target, st: SuiteTask, suite: Suite):
    """The tunelab task that scores ``st`` on ``target``."""
    kind = st.task.get(
        "type", "classification" if target.kind == "classification" else "generation"
    )
    if any(is_classifier_metric(m) for m in st.task.get("metrics", [])) and (
        kind == "classification" or target.kind == "classification"
    ):
        raise ConfigError(
            f"suite task {st.name!r}: classifier: metrics score generated text; the target "
            "must be a language model (a model name or a finished generation run)"
        )
    if kind == "classification":
        if target.kind != "classification":
            raise ConfigError(
                f"suite task {st.name!r} is a classification task: it needs a finished "
                "classification run as the target (its head), not a language model"
            )
        import copy

        task = copy.copy(target.task)
        for key, attr in (
            ("text", "text_column"),
            ("text_pair", "text_pair_column"),
            ("label", "label_column"),
        ):
            if key in st.columns:
                setattr(task, attr, st.columns[key])
        if suite.max_length:
            task.max_length = suite.max_length
        return task
    if target.kind == "classification":
        raise ConfigError(f"suite task {st.name!r} is a {kind} task; this target is a classifier")
    base = target.cfg.to_dict()
    base["task"] = {**st.task, "type": "generation"}
    if isinstance(st.task.get("metrics"), list):  # classifier:RUN_DIR: scored here, not by it
        base["task"]["metrics"] = [m for m in st.task["metrics"] if not is_classifier_metric(m)]
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
    # a choice-only task reports acc/acc_norm; like lm-eval it scores only the choices
    task.reference_loss = list(cfg.task.metrics) != ["choice"]
    return task


def dialogue_table(table: Table) -> Table:
    """HH-RLHF rows (``prompt`` transcript, ``chosen`` answer) with chat ``messages``: the
    transcript's turns, then ``chosen`` as the assistant's reference answer. Rows that are no
    such transcript are dropped and counted."""
    rows, ids, skipped = [], [], list(table.skipped)
    for row, rid in zip(table.rows, table.row_ids):
        msgs = hh_messages(row.get("prompt", "")) if isinstance(row.get("prompt"), str) else None
        answer = row.get("chosen")
        if not msgs or msgs[-1]["role"] != "user" or not isinstance(answer, str):
            skipped.append((rid, "prompt is not an HH-RLHF transcript ending with a Human turn"))
            continue
        rows.append({**row, "messages": [*msgs, {"role": "assistant", "content": answer.strip()}]})
        ids.append(rid)
    return Table(table.source, [*table.columns, "messages"], rows, ids, skipped)


def _perturbed(table, columns: list[str], kind: str, strength: float, seed: int):
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
        return {
            r["row"]: max(
                token_f1(r["prediction"], x)
                for x in (r["reference"] if isinstance(r["reference"], list) else [r["reference"]])
            )
            for r in rows
        }
    if "exact_match" in metrics:
        return {
            r["row"]: float(r["prediction"].strip() == str(r["reference"]).strip()) for r in rows
        }
    return None


def main_metric(task) -> str:
    """The score a suite reports for ``task``: its headline metric, else perplexity."""
    kind = task.kind
    return headline_metric(kind, [] if kind == "classification" else task.s["metrics"]) or (
        "perplexity"
    )


def run_suite(
    target: str,
    suite_path: str | Path,
    output: str | Path | None = None,
    batch_size: int | None = None,
    trust_remote_code: bool = False,
    console=None,
    precision: str | None = None,
) -> dict[str, Any]:
    """Score ``target`` on every task of the suite; write and return the results (in the run's
    ``eval/`` folder, ``output``, or ``runs/eval-NAME``)."""
    return run_suite_to_file(
        target, suite_path, output, batch_size, trust_remote_code, console, precision
    )[0]


def run_suite_to_file(
    target: str,
    suite_path: str | Path,
    output: str | Path | None = None,
    batch_size: int | None = None,
    trust_remote_code: bool = False,
    console=None,
    precision: str | None = None,
) -> tuple[dict[str, Any], Path]:
    """:func:`run_suite`, also returning the path of the results file."""
    suite, base_dir = load_suite(suite_path)
    retain_freed_memory()  # scoring's batches reuse freed blocks instead of faulting pages in
    t = Target(target, trust_remote_code, precision)
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
        if st.prepare == "wikitext_pages":
            rows = page_rows(table.rows, "text")
            table = Table(table.source, ["page", "text"], rows, list(range(1, len(rows) + 1)), [])
        elif st.prepare == "hh_dialogue":
            table = dialogue_table(table)
        if st.half:
            table = table.subset(seeded_half(len(table), st.half, st.half_seed), table.skipped)
        if st.limit and len(table) > st.limit:
            table = table.subset(list(range(st.limit)), table.skipped)
        if st.max_examples and len(table) > st.max_examples:
            idx = sorted(
                random.Random(f"{suite.seed}:{st.name}").sample(range(len(table)), st.max_examples)
            )
            table = table.subset(idx, table.skipped)
        say(f"{st.name} ({st.kind}, {len(table)} rows)")
        if st.kind != "task":
            results["tasks"][st.name] = _fairness(t, st, table, bs, suite.seed)
            continue
        task = _task_for(t, st, suite)
        clf = [
            parse_classifier_metric(m, base_dir)
            for m in st.task.get("metrics") or []
            if is_classifier_metric(m)
        ]

        split = task.table_to_split(table, st.name, on_error="skip")
        metrics, rows = _scored(t, task, split, clf, bs, precision)
        key = (headline(clf[0]) if clf else None) or main_metric(task)
        fed = getattr(task, "last_forward", None)
        if fed and fed["seconds"] > 0:
            metrics["forward_tokens_per_s"] = round(fed["tokens"] / fed["seconds"], 1)
            say(
                f"{st.name}: {fed['tokens']:,} tokens in {fed['seconds']:.1f} s "
                f"({metrics['forward_tokens_per_s']:,.0f} forward tokens/s)"
            )
        entry: dict[str, Any] = {
            "metric": key,
            "clean": metrics,
            "n": len(split),
            "skipped_rows": len(split.skipped),
        }
        if fed:
            entry["forward"] = {"tokens": fed["tokens"], "seconds": round(fed["seconds"], 3)}
        _save_rows(out_dir, f"suite-{suite.name}-{st.name}", rows)
        columns = input_columns(task)  # the inputs, never the references
        if rob.perturbations and st.robustness and columns:
            per: dict[str, Any] = {}
            worst = example_scores(task, rows)
            for kind in rob.perturbations:
                say(f"{st.name} under {kind}")
                noisy = task.table_to_split(
                    _perturbed(table, columns, kind, rob.strength, rob.seed),
                    f"{st.name}-{kind}",
                    on_error="skip",
                )
                m, prow = _scored(t, task, noisy, clf, bs, precision)
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
    path = out_dir / f"suite-{suite.name}.json"
    if t.accelerator.is_main_process:
        atomic_write_json(path, results)
    if console is not None:
        print_suite(console, results)
    return results, path


def _scored(t: Target, task, split, clf: list, bs: int, precision: str | None):
    """The task's own scores of ``split``, plus those of its ``classifier:`` metrics."""
    metrics, rows = task.evaluate(t.model, split, bs, t.accelerator)
    if clf:
        more, rows = score_generations(
            task, t.model, t.accelerator, split, rows, clf, bs, precision
        )
        metrics.update(more)
    return metrics, rows


def _fairness(t: Target, st: SuiteTask, table, bs: int, seed: int) -> dict[str, Any]:
    if st.kind == "crows_pairs":
        if t.kind == "classification":
            raise ConfigError(f"suite task {st.name!r}: crows_pairs scores language models")
        rep = fairness.crows_pairs_report(
            t.model, t.tokenizer, table.rows, bs, t.accelerator, getattr(t.task, "seq2seq", False)
        )
        return {"kind": st.kind, "metric": "pct_stereotype", **rep}
    if t.kind != "classification":
        raise ConfigError(
            f"suite task {st.name!r}: {st.kind} compares a classifier's predictions; the "
            "target must be a finished classification run"
        )
    if st.kind == "eec":
        rep = fairness.eec_report(
            t.task, t.model, table.rows, bs, t.accelerator, st.score_label, seed
        )
        return {"kind": st.kind, "metric": "gap", **rep}
    column = st.columns.get("text", t.task.text_column)
    if column not in table.columns:
        raise DataError(
            f"suite task {st.name!r}: column {column!r} not found; columns are: "
            f"{', '.join(table.columns)}"
        )
    texts = [r[column] for r in table.rows if isinstance(r.get(column), str)]
    rep = fairness.counterfactual_report(
        t.task, t.model, texts, st.attributes, bs, t.accelerator, st.score_label
    )
    return {"kind": st.kind, "metric": "flip_rate", **rep}


def _save_rows(out_dir: Path, name: str, rows: list[dict[str, Any]]) -> None:
    """A run's suite predictions go to its ``predictions/``; elsewhere next to the results."""
    if rows:
        in_run = out_dir.name == rundir.EVAL and rundir.is_run_dir(out_dir.parent)
        path = (
            rundir.predictions_path(out_dir.parent, name) if in_run else out_dir / f"{name}.jsonl"
        )
        atomic_write_jsonl(path, rows)


def dumps(results: dict[str, Any]) -> str:
    return json.dumps(results, indent=2, default=str)
