"""GLUE (STS-B, RTE, MRPC, CoLA) and CoNLL-2003: tunelab against Hugging Face ``Trainer``.

    python benchmarks/bench_glue.py [--rows 1000] [--dev-rows 400] [--epochs 2] [--seeds 42]
    python benchmarks/bench_glue.py --tasks mrpc --methods full --seeds 1,2,3   # seed noise

For every task and method (``full``, ``lora``) the embedded MiniLM-L6 is fine-tuned once with
tunelab and once with the peer, set up as transformers' ``run_glue`` example does (the same
model, rows, epochs, batch size, learning rate, max_length 128, linear schedule, weight decay,
``AutoModelForSequenceClassification``, num_labels=1 with MSE for STS-B; dynamic padding, i.e.
run_glue's ``--pad_to_max_length False``) and scored on the dev rows with the task's official
metric (CoLA: MCC; MRPC: F1 and accuracy; STS-B: Pearson and Spearman; RTE: accuracy). CoNLL-
2003 runs the shipped recipe (``configs/ner_conll2003_lora.yaml``: LoRA r=16) against
``Trainer`` + ``AutoModelForTokenClassification`` aligned as transformers' ``run_ner`` (the
first sub-word of each word labelled) and scored by seqeval entity F1.

Both sides report the weights training ends with. Train rows and dev rows are seeded samples
(``--rows``/``--dev-rows``, ``--ner-rows``/``--ner-dev-rows``); every run is a fresh subprocess
(``--worker``) so its peak RSS is its own. Throughput: train examples / wall seconds of the
training phase (the loop and its per-epoch dev evaluation; loading and tokenization excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "glue.json"
LORA = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["query", "key", "value", "dense"]}
NER_LORA = {
    "r": 16,
    "alpha": 32,
    "dropout": 0.0,
    "target_modules": ["query", "key", "value", "dense"],
}
MAX_LENGTH = 128
COLA = ["source", "label", "mark", "sentence"]

#: task → (folder, text, pair, label column, header-less columns, official metrics)
TASKS: dict[str, tuple] = {
    "stsb": ("STS-B", "sentence1", "sentence2", "score", None, ("pearson", "spearman")),
    "rte": ("RTE", "sentence1", "sentence2", "label", None, ("accuracy",)),
    "mrpc": ("MRPC", "#1 String", "#2 String", "Quality", None, ("f1", "accuracy")),
    "cola": ("CoLA", "sentence", None, "label", COLA, ("mcc",)),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--tasks", default="stsb,rte,mrpc,cola,conll")
    p.add_argument("--methods", default="full,lora")
    p.add_argument("--seeds", default="42", help="comma-separated; each run repeats per seed")
    p.add_argument("--rows", type=int, default=1000, help="seeded train rows per GLUE task")
    p.add_argument("--dev-rows", type=int, default=400, help="seeded dev rows per GLUE task")
    p.add_argument("--ner-rows", type=int, default=2000)
    p.add_argument("--ner-dev-rows", type=int, default=500)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--full-lr", type=float, default=5e-5)
    p.add_argument("--lora-lr", type=float, default=1e-3)
    grouping = p.add_mutually_exclusive_group()
    grouping.add_argument(
        "--no-group-by-length",
        action="store_true",
        help="tunelab draws batches at random, as the peer does (training.group_by_length=false)",
    )
    grouping.add_argument(
        "--group-by-length",
        action="store_true",
        help="tunelab batches by length on every task (training.group_by_length=true); "
        "without either flag, tunelab's default: on, except for CoNLL (token classification)",
    )
    p.add_argument("--worker", nargs=3, metavar=("TOOL", "TASK", "METHOD"), help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=42, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


# -- data: seeded samples written once, read by both tools -----------------------------------
def read_rows(task: str, split: str) -> list[dict[str, Any]]:
    from tunelab.data.sources import read_table

    if task == "conll":
        name = {"train": "train.txt", "dev": "valid.txt"}[split]
        return read_table(str(DATA / "ner" / "conll2003" / name)).rows
    folder, *_, columns, _ = TASKS[task]
    return read_table(str(DATA / "glue" / folder / f"{split}.tsv"), columns=columns).rows


def write_samples(args, task: str, work: Path) -> None:
    import numpy as np

    caps = (
        {"train": args.ner_rows, "dev": args.ner_dev_rows}
        if task == "conll"
        else {"train": args.rows, "dev": args.dev_rows}
    )
    for split, cap in caps.items():
        rows = read_rows(task, split)
        if cap < len(rows):
            pick = sorted(
                np.random.default_rng([0, len(rows)]).choice(len(rows), cap, replace=False)
            )
            rows = [rows[i] for i in pick]
        with open(work / f"{task}-{split}.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.open(encoding="utf-8")]


# -- tunelab ---------------------------------------------------------------------------------
def run_tunelab(args, task: str, method: str, lr: float, work: Path, tmp: str) -> dict:
    import tunelab

    if task == "conll":
        cfg: dict[str, Any] = tunelab.load_config(
            ROOT / "configs" / "ner_conll2003_lora.yaml"
        ).to_dict()
        cfg["data"].update(test=None)
        cfg["lora"].update(dropout=NER_LORA["dropout"], target_modules=NER_LORA["target_modules"])
    else:
        _, text, pair, label, _, _ = TASKS[task]
        cfg = {
            "model": {"name": "minilm-l6", "max_length": MAX_LENGTH},
            "data": {"text_column": text, "text_pair_column": pair, "label_column": label},
            "task": {"type": "regression" if task == "stsb" else "classification"},
            "lora": LORA,
        }
    cfg["data"].update(
        train=str(work / f"{task}-train.jsonl"), validation=str(work / f"{task}-dev.jsonl")
    )
    cfg["method"] = method
    cfg["training"] = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": lr,
        "precision": "fp32",
        "seed": args.seed,
        "warmup_ratio": 0.0,
        "weight_decay": 0.0,
        "eval_before": False,
        "load_best": False,
        "save_checkpoints": False,
        "progress": False,
    }
    if args.no_group_by_length or args.group_by_length:  # else tunelab's default
        cfg["training"]["group_by_length"] = bool(args.group_by_length)
    cfg["output"] = {"dir": tmp, "name": f"{task}-{method}"}
    res = tunelab.train(cfg)
    return {
        "metrics": res.metrics,
        "wall_seconds": res.summary["wall_seconds"],
        "trainable_params": res.params.get("trainable"),
    }


# -- peer: Trainer as run_glue / run_ner set it up ------------------------------------------
def glue_peer_data(task: str, work: Path, tok):
    from datasets import Dataset

    _, text, pair, label, _, _ = TASKS[task]
    train, dev = (load_jsonl(work / f"{task}-{s}.jsonl") for s in ("train", "dev"))
    regression = task == "stsb"
    names = None if regression else sorted({r[label] for r in train})
    if names and all(n.isdigit() for n in names):
        names = sorted(names, key=int)  # as tunelab orders labels (infer_labels)

    def ds(rows):
        d = {
            "a": [r[text] for r in rows],
            "label": [float(r[label]) if regression else names.index(r[label]) for r in rows],
        }
        if pair:
            d["b"] = [r[pair] for r in rows]
        enc = lambda b: tok(b["a"], b.get("b"), truncation=True, max_length=MAX_LENGTH)  # noqa: E731
        return Dataset.from_dict(d).map(
            enc, batched=True, remove_columns=[c for c in d if c != "label"]
        )

    return ds(train), ds(dev), 1 if regression else len(names)


def conll_peer_data(work: Path, tok):
    from datasets import Dataset

    train, dev = (load_jsonl(work / f"conll-{s}.jsonl") for s in ("train", "dev"))
    tags = sorted({t for r in train for t in r["tags"]}, key=lambda t: (t != "O", t[2:], t))

    def ds(rows):
        enc = tok(
            [r["tokens"] for r in rows],
            is_split_into_words=True,
            truncation=True,
            max_length=MAX_LENGTH,
        )
        labels = []
        for i, r in enumerate(rows):  # run_ner: the first sub-word of a word, -100 elsewhere
            prev, lab = None, []
            for w in enc.word_ids(i):
                lab.append(-100 if w is None or w == prev else tags.index(r["tags"][w]))
                prev = w
            labels.append(lab)
        return Dataset.from_dict({**{k: enc[k] for k in enc}, "labels": labels})

    return ds(train), ds(dev), tags


def glue_compute(task: str):
    import numpy as np

    def compute(p):
        from scipy.stats import pearsonr, spearmanr
        from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

        if task == "stsb":
            pred = np.squeeze(p.predictions)
            return {
                "pearson": float(pearsonr(pred, p.label_ids)[0]),
                "spearman": float(spearmanr(pred, p.label_ids)[0]),
            }
        pred = np.argmax(p.predictions, axis=-1)
        out = {"accuracy": float(accuracy_score(p.label_ids, pred))}
        if task == "mrpc":
            out["f1"] = float(f1_score(p.label_ids, pred))
        if task == "cola":
            out["mcc"] = float(matthews_corrcoef(p.label_ids, pred))
        return out

    return compute


def ner_compute(tags):
    import numpy as np

    def compute(p):
        from seqeval.metrics import f1_score

        pred = np.argmax(p.predictions, axis=-1)
        gold_seqs, pred_seqs = [], []
        for ps, ls in zip(pred, p.label_ids):
            keep = [(tags[a], tags[b]) for a, b in zip(ps, ls) if b != -100]
            pred_seqs.append([a for a, _ in keep])
            gold_seqs.append([b for _, b in keep])
        return {"entity_f1": float(f1_score(gold_seqs, pred_seqs))}

    return compute


def run_peer(args, task: str, method: str, lr: float, work: Path, tmp: str) -> dict:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from tunelab.models.registry import resolve_model

    set_seed(args.seed)
    path = resolve_model("minilm-l6").path
    tok = AutoTokenizer.from_pretrained(path)
    if task == "conll":
        train_ds, dev_ds, tags = conll_peer_data(work, tok)
        model = AutoModelForTokenClassification.from_pretrained(path, num_labels=len(tags))
        collator, compute, lora, kind = (
            DataCollatorForTokenClassification(tok),
            ner_compute(tags),
            NER_LORA,
            "TOKEN_CLS",
        )
    else:
        train_ds, dev_ds, n = glue_peer_data(task, work, tok)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=n)
        collator, compute, lora, kind = (
            DataCollatorWithPadding(tok),
            glue_compute(task),
            LORA,
            "SEQ_CLS",
        )
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                task_type=kind,
                r=lora["r"],
                lora_alpha=lora["alpha"],
                lora_dropout=lora["dropout"],
                target_modules=lora["target_modules"],
            ),
        )
    targs = TrainingArguments(
        output_dir=tmp,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=2 * args.batch_size,
        num_train_epochs=args.epochs,
        learning_rate=lr,
        weight_decay=0.0,
        lr_scheduler_type="linear",
        eval_strategy="epoch",
        save_strategy="no",
        logging_steps=50,
        report_to=[],
        seed=args.seed,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=train_ds,
        eval_dataset=dev_ds,
        data_collator=collator,
        processing_class=tok,
        compute_metrics=compute,
    )
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    last = [h for h in trainer.state.log_history if "eval_loss" in h][-1]
    metrics = {k[len("eval_") :]: v for k, v in last.items() if k.startswith("eval_")}
    return {
        "metrics": metrics,
        "wall_seconds": wall,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


def worker(args) -> None:
    import torch

    tool, task, method = args.worker
    lr = args.full_lr if method == "full" else args.lora_lr
    with tempfile.TemporaryDirectory(prefix=f"bench-{tool}-{task}-") as tmp:
        r = (run_tunelab if tool == "tunelab" else run_peer)(args, task, method, lr, args.work, tmp)
    n = len(load_jsonl(args.work / f"{task}-train.jsonl"))
    r.update(
        tool=tool,
        task=task,
        method=method,
        lr=lr,
        seed=args.seed,
        examples=n * args.epochs,
        examples_per_s=n * args.epochs / r["wall_seconds"],
        threads=torch.get_num_threads(),
        peak_rss_mb=peak_rss_mb(),
    )
    r["metrics"] = {k: v for k, v in r["metrics"].items() if isinstance(v, float)}
    (args.work / f"{tool}-{task}-{method}-{args.seed}.json").write_text(json.dumps(r, indent=2))


# -- driver ----------------------------------------------------------------------------------
def official(task: str) -> tuple[str, ...]:
    return ("entity_f1",) if task == "conll" else TASKS[task][5]


def score(task: str, metrics: dict[str, float]) -> float:
    names = official(task)
    return 100 * sum(metrics[m] for m in names) / len(names)


def launch(args, tool: str, task: str, method: str, seed: int, work: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", tool, task, method]
    cmd += ["--seed", str(seed), "--work", str(work), "--epochs", str(args.epochs)]
    cmd += ["--batch-size", str(args.batch_size), "--full-lr", repr(args.full_lr)]
    cmd += ["--lora-lr", repr(args.lora_lr)]
    cmd += ["--no-group-by-length"] if args.no_group_by_length else []
    cmd += ["--group-by-length"] if args.group_by_length else []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    log = work / f"{tool}-{task}-{method}-{seed}.log"
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    result = work / f"{tool}-{task}-{method}-{seed}.json"
    if rc != 0 or not result.is_file():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        sys.exit(f"{tool} {task} {method} worker failed (exit {rc}):\n{tail}")
    return json.loads(result.read_text())


def summarize(runs: list[dict]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in runs:
        out.setdefault((r["task"], r["method"]), {}).setdefault(r["tool"], []).append(r)
    table = {}
    for (task, method), by_tool in out.items():
        row = {}
        for tool, rs in by_tool.items():
            scores = [score(task, r["metrics"]) for r in rs]
            row[tool] = {
                "score": statistics.mean(scores),
                "score_sd": statistics.stdev(scores) if len(scores) > 1 else None,
                "scores": scores,
                "metrics": {
                    m: statistics.mean(r["metrics"][m] for r in rs) for m in official(task)
                },
                "examples_per_s": statistics.median(r["examples_per_s"] for r in rs),
                "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs),
            }
        if "peer" in row and "tunelab" in row:
            p, t = row["peer"], row["tunelab"]
            row["ratio"] = {
                "score_delta": t["score"] - p["score"],
                "examples_per_s": t["examples_per_s"] / p["examples_per_s"],
                "peak_rss": t["peak_rss_mb"] / p["peak_rss_mb"],
            }
        table[f"{task}/{method}"] = row
    return table


def print_table(table: dict, args) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(
        title=f"GLUE dev + CoNLL · minilm-l6 · {args.rows} rows (CoNLL {args.ner_rows}) × "
        f"{args.epochs} epochs · batch {args.batch_size} · fp32 · seeds {args.seeds}"
    )
    for c in ("task/method", "tool", "official metric", "score", "train ex/s", "peak RSS MB"):
        t.add_column(
            c, justify="left" if c in ("task/method", "tool", "official metric") else "right"
        )
    for key, row in table.items():
        task = key.split("/")[0]
        for tool in ("peer", "tunelab"):
            if tool not in row:
                continue
            m = row[tool]
            sd = f" ± {m['score_sd']:.1f}" if m["score_sd"] is not None else ""
            vals = "/".join(f"{100 * v:.1f}" for v in m["metrics"].values())
            t.add_row(
                key,
                "HF Trainer" if tool == "peer" else "tunelab",
                f"{'/'.join(official(task))} {vals}",
                f"{m['score']:.1f}{sd}",
                f"{m['examples_per_s']:.1f}",
                f"{m['peak_rss_mb']:.0f}",
            )
        if "ratio" in row:
            r = row["ratio"]
            t.add_row(
                key,
                "[bold]tunelab / peer[/]",
                "",
                f"{r['score_delta']:+.1f}",
                f"×{r['examples_per_s']:.2f}",
                f"×{r['peak_rss']:.2f}",
                end_section=True,
            )
    Console().print(t)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    tasks = [t for t in args.tasks.split(",") if t]
    have = []
    for task in tasks:
        need = (
            [DATA / "ner" / "conll2003" / "train.txt"]
            if task == "conll"
            else [DATA / "glue" / TASKS[task][0] / "train.tsv"]
        )
        if all(p.is_file() for p in need):
            have.append(task)
        else:
            print(f"skipped: {task} (no data under {DATA})")
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-glue-") as d:
        work = Path(d)
        for task in have:
            write_samples(args, task, work)
            methods = ["lora"] if task == "conll" else args.methods.split(",")
            for method in methods:
                for seed in seeds:
                    for tool in ("peer", "tunelab"):
                        print(f"{task} {method} seed {seed}: {tool} ...", flush=True)
                        r = launch(args, tool, task, method, seed, work)
                        print(
                            f"    {score(task, r['metrics']):.1f} · "
                            f"{r['examples_per_s']:.1f} ex/s · {r['peak_rss_mb']:.0f} MB",
                            flush=True,
                        )
                        runs.append(r)
    table = summarize(runs)
    print_table(table, args)
    settings = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("worker", "work", "seed")
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"settings": settings, "table": table, "runs": runs}, indent=2))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
