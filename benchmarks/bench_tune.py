"""Hyperparameter search: ``tunelab tune`` against ``transformers.Trainer.hyperparameter_search``.

    python benchmarks/bench_tune.py [--rows 8000] [--trials 8]

MiniLM-L6 + LoRA on a seeded sample of SST-2 ``train.tsv`` (``--rows``): a seeded 10% of it is
held out as the validation split that every trial is scored on, ``dev.tsv`` is the test split
(scored for each tool's best trial only). The same space (learning rate, log-uniform; batch size;
LoRA rank, log-uniform int), the same budget of ``--trials`` trials, Optuna's TPE sampler with
the same seed and the same median pruner (``--prune-startup`` trials before any is pruned) fed
by validation accuracy every ``--eval-every`` steps, for both tools. Each search is its own
subprocess, in the order peer, tunelab (median), tunelab (pruner none).

Both tools' objective is the accuracy of the weights training ends with (tunelab's
``training.load_best: false``, as HF's last evaluation), and neither writes checkpoints
(``training.save_checkpoints: false``, HF ``save_strategy="no"``). HF keeps no trained model
per trial: the peer's dev accuracy is that of its best parameters retrained once (its
documented workflow), timed separately; tunelab scores the best trial's own run directory.
Wall time is the search call's (imports excluded); steps are optimizer steps over all trials.

Acceptance (the issue): tunelab's best validation score at least the peer's, in less wall time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "tune.json"
ORDER = ["peer", "tunelab", "tunelab-nopruning"]
LORA = {"alpha": 16, "dropout": 0.0, "target_modules": ["query", "key", "value", "dense"]}
LABELS = ["negative", "positive"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--rows", type=int, default=8000, help="train.tsv rows sampled (seeded)")
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--eval-every", type=int, default=40, help="optimizer steps between evals")
    p.add_argument("--prune-startup", type=int, default=3, help="median pruner warm-up trials")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--lr", type=float, nargs=2, default=[1e-4, 3e-3])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32])
    p.add_argument("--ranks", type=int, nargs=2, default=[4, 16])
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--sampler-seed", type=int, default=0)
    p.add_argument("--only", choices=ORDER, nargs="+", default=ORDER)
    p.add_argument("--worker", choices=ORDER, help=argparse.SUPPRESS)
    p.add_argument("--split-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def read_tsv(path: Path, quoting: int = csv.QUOTE_MINIMAL) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=quoting))


def write_tsv(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["sentence", "label"])
        w.writerows([r["sentence"], r["label"]] for r in rows)


# -- tunelab --------------------------------------------------------------------------------
def run_tunelab(args: argparse.Namespace, pruner: str, tmp: str) -> dict[str, Any]:
    from tunelab.workflows.tune import tune

    d = args.split_dir
    cfg = {
        "model": {"name": "minilm-l6", "max_length": args.max_length},
        "data": {
            "train": str(d / "train.tsv"),
            "validation": str(d / "validation.tsv"),
            "test": str(args.data_dir / "dev.tsv"),
            "text_column": "sentence",
            "label_column": "label",
            "labels": LABELS,
        },
        "method": "lora",
        "lora": {"r": 8, **LORA},
        "training": {
            "epochs": args.epochs,
            "batch_size": args.batch_sizes[0],
            "lr": 1e-3,
            "precision": "fp32",
            "seed": args.seed,
            "warmup_ratio": 0.06,
            "weight_decay": 0.01,
            "eval_every": args.eval_every,
            "eval_before": False,
            "load_best": False,  # the objective is the final weights' score, as HF's
            "save_checkpoints": False,
            "progress": False,
        },
        "output": {"dir": tmp, "name": "bench"},
        "search": {
            "metric": "accuracy",
            "direction": "maximize",
            "sampler": "tpe",
            "seed": args.sampler_seed,
            "pruner": pruner,
            "prune_startup_trials": args.prune_startup,
            "space": {
                "training.lr": {"float": list(args.lr), "log": True},
                "training.batch_size": {"choice": list(args.batch_sizes)},
                "lora.r": {"int": list(args.ranks), "log": True},
            },
        },
    }
    t0 = time.perf_counter()
    res = tune(cfg, trials=args.trials, study="bench", output=Path(tmp) / "study")
    wall = time.perf_counter() - t0
    best = res.best[0]
    return {
        "wall_seconds": wall,
        "completed": sum(t["state"] == "complete" for t in res.trials),
        "pruned": sum(t["state"] == "pruned" for t in res.trials),
        "steps": sum(t["steps"] or 0 for t in res.trials),
        "best_validation": best["values"]["accuracy"],
        "best_params": best["params"],
        "best_test": res.best_test["metrics"]["accuracy"],
        "test_seconds": 0.0,  # the best trial's own weights, scored inside the search call
        "trials": [
            {"params": t["params"], "state": t["state"], "steps": t["steps"], "values": t["values"]}
            for t in res.trials
        ],
    }


# -- the peer: Trainer.hyperparameter_search(backend="optuna") ------------------------------
def run_peer(args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    import numpy as np
    import optuna
    import torch
    from datasets import Dataset
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from tunelab.models.registry import resolve_model

    path = resolve_model("minilm-l6").path
    tok = AutoTokenizer.from_pretrained(path)

    def dataset(rows: list[dict[str, str]]) -> Dataset:
        ds = Dataset.from_dict(
            {"sentence": [r["sentence"] for r in rows], "label": [int(r["label"]) for r in rows]}
        )
        return ds.map(
            lambda b: tok(b["sentence"], truncation=True, max_length=args.max_length),
            batched=True,
            remove_columns=["sentence"],
        )

    d = args.split_dir
    train_ds, val_ds = dataset(read_tsv(d / "train.tsv")), dataset(read_tsv(d / "validation.tsv"))
    dev_ds = dataset(read_tsv(args.data_dir / "dev.tsv"))

    def hp_space(trial) -> dict[str, Any]:
        return {
            "learning_rate": trial.suggest_float("learning_rate", *args.lr, log=True),
            "per_device_train_batch_size": trial.suggest_categorical(
                "per_device_train_batch_size", list(args.batch_sizes)
            ),
            "lora_r": trial.suggest_int("lora_r", *args.ranks, log=True),
        }

    def model_init(trial=None):
        # HF builds the model before it applies hp_space; sampling the whole space here (in
        # tunelab's order) and again in hp_space gives the same values (Optuna repeats them)
        r = 8 if trial is None else hp_space(trial)["lora_r"]
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        return get_peft_model(
            model,
            LoraConfig(
                task_type=TaskType.SEQ_CLS,
                r=int(r),
                lora_alpha=LORA["alpha"],
                lora_dropout=LORA["dropout"],
                target_modules=LORA["target_modules"],
            ),
        )

    steps: list[int] = []

    class Steps(TrainerCallback):
        def on_train_end(self, a, state, control, **kw):
            steps.append(state.global_step)

    def compute_metrics(p) -> dict[str, float]:
        return {"accuracy": float((np.argmax(p.predictions, axis=-1) == p.label_ids).mean())}

    targs = TrainingArguments(
        output_dir=tmp,
        per_device_train_batch_size=args.batch_sizes[0],
        per_device_eval_batch_size=64,
        num_train_epochs=args.epochs,
        learning_rate=1e-3,
        warmup_steps=0.06,
        weight_decay=0.01,
        lr_scheduler_type="linear",
        eval_strategy="steps",
        eval_steps=args.eval_every,
        save_strategy="no",
        logging_steps=50,
        report_to=[],
        seed=args.seed,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
    )
    trainer = Trainer(
        model_init=model_init,
        args=targs,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        data_collator=DataCollatorWithPadding(tok),
        processing_class=tok,
        compute_metrics=compute_metrics,
        callbacks=[Steps()],
    )
    t0 = time.perf_counter()
    best = trainer.hyperparameter_search(
        hp_space=hp_space,
        compute_objective=lambda m: m["eval_accuracy"],
        n_trials=args.trials,
        direction="maximize",
        backend="optuna",
        sampler=optuna.samplers.TPESampler(seed=args.sampler_seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=args.prune_startup),
        study_name="bench",
        storage=f"sqlite:///{tmp}/peer.db",  # to count its pruned trials afterwards
    )
    wall = time.perf_counter() - t0
    search_steps = sum(steps)
    study = optuna.load_study(study_name="bench", storage=f"sqlite:///{tmp}/peer.db")
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    completed = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    # HF keeps no model per trial: retrain the best parameters once and score dev (test)
    t1 = time.perf_counter()
    trainer.train(trial=optuna.trial.FixedTrial(best.hyperparameters))  # as a trial would
    dev = trainer.evaluate(dev_ds)["eval_accuracy"]
    retrain_val = trainer.evaluate(val_ds)["eval_accuracy"]
    return {
        "wall_seconds": wall,
        "completed": completed,
        "pruned": pruned,
        "steps": search_steps,
        "best_validation": float(best.objective),
        "best_params": best.hyperparameters,
        "best_test": float(dev),
        "retrained_validation": float(retrain_val),
        "test_seconds": time.perf_counter() - t1,
    }


def worker(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix=f"bench-tune-{args.worker}-") as tmp:
        if args.worker == "peer":
            r = run_peer(args, tmp)
        else:
            r = run_tunelab(args, "none" if args.worker == "tunelab-nopruning" else "median", tmp)
    r["tool"] = args.worker
    args.result_file.write_text(json.dumps(r, indent=2))


# -- driver ---------------------------------------------------------------------------------
def split_rows(args: argparse.Namespace, dest: Path) -> tuple[int, int]:
    import numpy as np

    rows = read_tsv(args.data_dir / "train.tsv", quoting=csv.QUOTE_NONE)
    if args.rows > len(rows):
        sys.exit(f"--rows {args.rows}: train.tsv has only {len(rows)} rows")
    rng = np.random.default_rng(args.seed)
    pick = [rows[i] for i in rng.choice(len(rows), args.rows, replace=False)]
    n_val = max(1, round(0.1 * len(pick)))  # a seeded 10% held out from train as validation
    write_tsv(dest / "validation.tsv", pick[:n_val])
    write_tsv(dest / "train.tsv", pick[n_val:])
    return len(pick) - n_val, n_val


def launch(args: argparse.Namespace, tool: str, split: Path, tmp: Path) -> dict[str, Any]:
    result, log = tmp / f"{tool}.json", tmp / f"{tool}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", tool]
    cmd += ["--split-dir", str(split), "--result-file", str(result)]
    for key in ("data_dir", "rows", "trials", "epochs", "eval_every", "prune_startup"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    cmd += ["--max-length", str(args.max_length), "--seed", str(args.seed)]
    cmd += ["--sampler-seed", str(args.sampler_seed), "--lr", *map(repr, args.lr)]
    cmd += ["--batch-sizes", *map(str, args.batch_sizes), "--ranks", *map(str, args.ranks)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc != 0 or not result.is_file():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        sys.exit(f"{tool} worker failed (exit {rc}):\n{tail}")
    return json.loads(result.read_text())


def print_table(res: dict[str, dict[str, Any]], args, n_train: int, n_val: int) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(
        title=f"LoRA search · minilm-l6 · SST-2 {n_train} train / {n_val} validation rows · "
        f"{args.trials} trials · TPE seed {args.sampler_seed} · fp32"
    )
    cols = ["tool", "wall s", "completed", "pruned", "train steps", "best val acc", "dev acc"]
    for c in cols:
        t.add_column(c, justify="left" if c == "tool" else "right")
    names = {
        "peer": "peer (HF hyperparameter_search)",
        "tunelab": "tunelab tune (median)",
        "tunelab-nopruning": "tunelab tune (pruner none)",
    }
    for tool, r in res.items():
        t.add_row(
            names[tool],
            f"{r['wall_seconds']:.1f}",
            str(r["completed"]),
            str(r["pruned"]),
            str(r["steps"]),
            f"{r['best_validation']:.4f}",
            f"{r['best_test']:.4f}",
        )
    if "peer" in res and "tunelab" in res:
        p, tl = res["peer"], res["tunelab"]
        t.add_row(
            "[bold]tunelab / peer[/]",
            f"×{tl['wall_seconds'] / p['wall_seconds']:.2f}",
            "",
            "",
            f"×{tl['steps'] / max(p['steps'], 1):.2f}",
            f"{tl['best_validation'] - p['best_validation']:+.4f}",
            f"{tl['best_test'] - p['best_test']:+.4f}",
        )
    if "tunelab" in res and "tunelab-nopruning" in res:
        a, b = res["tunelab"], res["tunelab-nopruning"]
        t.add_row(
            "[bold]median / none[/]",
            f"×{a['wall_seconds'] / b['wall_seconds']:.2f}",
            "",
            "",
            f"×{a['steps'] / max(b['steps'], 1):.2f}",
            f"{a['best_validation'] - b['best_validation']:+.4f}",
            f"{a['best_test'] - b['best_test']:+.4f}",
        )
    Console().print(t)
    if "peer" in res:
        print(
            f"peer: best parameters retrained once for its dev score in "
            f"{res['peer']['test_seconds']:.1f} s (not in its wall time)"
        )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    missing = [f for f in ("train.tsv", "dev.tsv") if not (args.data_dir / f).is_file()]
    if missing:
        print(f"skipped: SST-2 {', '.join(missing)} not found in {args.data_dir}")
        return
    res: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as d:
        tmp = Path(d)
        n_train, n_val = split_rows(args, tmp)
        for tool in [t for t in ORDER if t in args.only]:
            print(f"{tool} ...", flush=True)
            res[tool] = launch(args, tool, tmp, tmp)
            r = res[tool]
            print(
                f"    {r['wall_seconds']:.1f} s · best val {r['best_validation']:.4f} · "
                f"dev {r['best_test']:.4f} · {r['completed']} done, {r['pruned']} pruned",
                flush=True,
            )
    print_table(res, args, n_train, n_val)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    for k in ("worker", "split_dir", "result_file"):
        settings.pop(k)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"settings": settings, "results": res}, indent=2))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
