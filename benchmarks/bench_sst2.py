"""SST-2 benchmark: tunelab against Hugging Face ``Trainer`` (+ PEFT) on the embedded MiniLM-L6.

    python benchmarks/bench_sst2.py [--repeats 1]

Fine-tunes ``minilm-l6`` on a seeded 8,000-row sample of SST-2 (dev.tsv as validation) with
``full`` and ``lora``, once with tunelab and once with the peer, using the same rows, model,
batch size, learning rate, precision and epochs. Every (tool, method) run is a fresh subprocess
(``--worker TOOL METHOD``), run in the order peer full, tunelab full, peer lora, tunelab lora;
``--repeats N`` repeats that alternation and reports medians. Throughput for both tools is
train examples / wall seconds of the training phase (training loop plus its per-epoch dev
evaluation; model loading and tokenization excluded).

Acceptance (the issue): tunelab dev accuracy >= 0.88 (full) and >= 0.87 (LoRA), and tunelab
train examples/s not below the peer's.
"""

from __future__ import annotations

import argparse
import csv
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

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "sst2.json"
ORDER = [("peer", "full"), ("tunelab", "full"), ("peer", "lora"), ("tunelab", "lora")]
LORA = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["query", "key", "value", "dense"]}
MAX_LENGTH = 128
LABELS = ["negative", "positive"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--rows", type=int, default=8000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--full-lr", type=float, default=5e-5)
    p.add_argument("--lora-lr", type=float, default=1e-3)
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    # internal: one (tool, method) run in this process
    p.add_argument("--worker", nargs=2, metavar=("TOOL", "METHOD"), help=argparse.SUPPRESS)
    p.add_argument("--train-file", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def read_tsv(path: Path, quoting: int = csv.QUOTE_MINIMAL) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=quoting))


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024**2 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KB on Linux


# -- workers --------------------------------------------------------------------------------
def run_tunelab(args: argparse.Namespace, method: str, lr: float, tmp: str) -> dict[str, Any]:
    import tunelab

    res = tunelab.train(
        {
            "model": {"name": "minilm-l6", "max_length": MAX_LENGTH},
            "data": {
                "train": str(args.train_file),
                "validation": str(args.data_dir / "dev.tsv"),
                "text_column": "sentence",
                "label_column": "label",
                "labels": LABELS,
            },
            "method": method,
            "lora": LORA,
            "training": {
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "lr": lr,
                "precision": args.precision,
                "seed": args.seed,
                "warmup_ratio": 0.06,
                "weight_decay": 0.01,
                "eval_before": False,
                "load_best": False,  # report the final weights, as the peer does
                "save_checkpoints": False,
                "progress": False,
            },
            "output": {"dir": tmp, "name": f"bench-{method}"},
        }
    )
    s = res.summary
    evals = [json.loads(line) for line in (res.run_dir / "metrics.jsonl").open()]
    return {
        "accuracy": float(res.metrics["accuracy"]),
        "epoch_accuracies": [r["accuracy"] for r in evals if r.get("type") == "eval"],
        "wall_seconds": s["wall_seconds"],
        "step_examples_per_s": s["examples_per_s"],
        "examples_counted": s["examples"],
        "trainable_params": res.params.get("trainable"),
    }


def run_peer(args: argparse.Namespace, method: str, lr: float, tmp: str) -> dict[str, Any]:
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
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
            lambda b: tok(b["sentence"], truncation=True, max_length=MAX_LENGTH),
            batched=True,
            remove_columns=["sentence"],
        )

    train_ds = dataset(read_tsv(args.train_file))
    dev_ds = dataset(read_tsv(args.data_dir / "dev.tsv"))
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    if method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                task_type=TaskType.SEQ_CLS,
                r=LORA["r"],
                lora_alpha=LORA["alpha"],
                lora_dropout=LORA["dropout"],
                target_modules=LORA["target_modules"],
            ),
        )

    def compute_metrics(p) -> dict[str, float]:
        return {"accuracy": float((np.argmax(p.predictions, axis=-1) == p.label_ids).mean())}

    targs = TrainingArguments(
        output_dir=tmp,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=2 * args.batch_size,
        num_train_epochs=args.epochs,
        learning_rate=lr,
        warmup_steps=0.06,  # transformers 5: a float < 1 is a ratio (warmup_ratio is gone)
        weight_decay=0.01,
        lr_scheduler_type="linear",
        bf16=args.precision == "bf16",
        eval_strategy="epoch",
        save_strategy="no",
        logging_steps=50,
        report_to=[],
        seed=args.seed,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,  # tunelab runs with progress=False
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=train_ds,
        eval_dataset=dev_ds,
        data_collator=DataCollatorWithPadding(tok),
        processing_class=tok,
        compute_metrics=compute_metrics,
    )
    t0 = time.perf_counter()
    out = trainer.train()
    wall = time.perf_counter() - t0
    accs = [h["eval_accuracy"] for h in trainer.state.log_history if "eval_accuracy" in h]
    return {
        "accuracy": float(accs[-1]),  # the weights training ends with (no load-best)
        "epoch_accuracies": accs,
        "wall_seconds": wall,
        "step_examples_per_s": out.metrics["train_samples_per_second"],
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


def worker(args: argparse.Namespace) -> None:
    import torch

    tool, method = args.worker
    lr = args.full_lr if method == "full" else args.lora_lr
    with tempfile.TemporaryDirectory(prefix=f"bench-{tool}-{method}-") as tmp:
        run = run_tunelab if tool == "tunelab" else run_peer
        r = run(args, method, lr, tmp)
    examples = args.rows * args.epochs
    r.update(
        tool=tool,
        method=method,
        lr=lr,
        precision=args.precision,
        examples=examples,
        examples_per_s=examples / r["wall_seconds"],
        threads=torch.get_num_threads(),
        peak_rss_mb=peak_rss_mb(),
    )
    args.result_file.write_text(json.dumps(r, indent=2))


# -- driver ---------------------------------------------------------------------------------
def sample_train(args: argparse.Namespace, dest: Path) -> None:
    import numpy as np

    rows = read_tsv(args.data_dir / "train.tsv", quoting=csv.QUOTE_NONE)
    if args.rows > len(rows):
        sys.exit(f"--rows {args.rows}: train.tsv has only {len(rows)} rows")
    pick = sorted(np.random.default_rng(args.seed).choice(len(rows), args.rows, replace=False))
    with open(dest, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["sentence", "label"])
        w.writerows([rows[i]["sentence"], rows[i]["label"]] for i in pick)


def launch(args: argparse.Namespace, tool: str, method: str, train: Path, tmp: Path) -> dict:
    result, log = tmp / f"{tool}-{method}.json", tmp / f"{tool}-{method}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", tool, method]
    cmd += ["--train-file", str(train), "--result-file", str(result)]
    cmd += ["--data-dir", str(args.data_dir), "--rows", str(args.rows)]
    cmd += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    cmd += ["--seed", str(args.seed), "--precision", args.precision]
    cmd += ["--full-lr", repr(args.full_lr), "--lora-lr", repr(args.lora_lr)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc != 0 or not result.is_file():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        sys.exit(f"{tool} {method} worker failed (exit {rc}):\n{tail}")
    return json.loads(result.read_text())


def median_runs(runs: list[dict]) -> dict[str, Any]:
    keys = ("accuracy", "examples_per_s", "step_examples_per_s", "wall_seconds", "peak_rss_mb")
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def print_table(summary: dict, precision: str, args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(
        title=f"SST-2 · minilm-l6 · {args.rows} rows × {args.epochs} epochs · batch "
        f"{args.batch_size} · precision {precision} · median of {args.repeats}"
    )
    for col, just in [("method", "left"), ("tool", "left"), ("dev acc", "right")]:
        t.add_column(col, justify=just)
    t.add_column("train ex/s", justify="right")
    t.add_column("peak RSS (MB)", justify="right")
    for method in ("full", "lora"):
        peer, tl = summary[method]["peer"], summary[method]["tunelab"]
        for name, m in (("peer (HF Trainer)", peer), ("tunelab", tl)):
            acc, eps, rss = m["accuracy"], m["examples_per_s"], m["peak_rss_mb"]
            t.add_row(method, name, f"{acc:.4f}", f"{eps:.1f}", f"{rss:.0f}")
        r = summary[method]["tunelab_vs_peer"]
        t.add_row(
            method,
            "[bold]tunelab / peer[/]",
            f"{r['accuracy_delta']:+.4f}",
            f"×{r['examples_per_s_ratio']:.2f}",
            f"×{r['peak_rss_ratio']:.2f}",
            end_section=True,
        )
    Console().print(t)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    missing = [f for f in ("train.tsv", "dev.tsv") if not (args.data_dir / f).is_file()]
    if missing:
        print(f"skipped: SST-2 {', '.join(missing)} not found in {args.data_dir}")
        return
    from tunelab.api import choose_precision

    if args.precision == "auto":
        args.precision = "bf16" if choose_precision("auto") == "bf16" else "fp32"
    runs: dict[tuple[str, str], list[dict]] = {k: [] for k in ORDER}
    with tempfile.TemporaryDirectory(prefix="bench-sst2-") as d:
        tmp = Path(d)
        train = tmp / "train.tsv"
        sample_train(args, train)
        for rep in range(args.repeats):
            for tool, method in ORDER:
                print(f"[{rep + 1}/{args.repeats}] {tool} {method} ...", flush=True)
                r = launch(args, tool, method, train, tmp)
                print(f"    acc {r['accuracy']:.4f} · {r['examples_per_s']:.1f} ex/s", flush=True)
                runs[(tool, method)].append(r)
    summary: dict[str, Any] = {}
    for method in ("full", "lora"):
        peer, tl = median_runs(runs[("peer", method)]), median_runs(runs[("tunelab", method)])
        summary[method] = {
            "peer": peer,
            "tunelab": tl,
            "tunelab_vs_peer": {
                "accuracy_delta": tl["accuracy"] - peer["accuracy"],
                "examples_per_s_ratio": tl["examples_per_s"] / peer["examples_per_s"],
                "peak_rss_ratio": tl["peak_rss_mb"] / peer["peak_rss_mb"],
            },
        }
    print_table(summary, args.precision, args)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    for k in ("worker", "train_file", "result_file"):
        settings.pop(k)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "settings": settings,
                "summary": summary,
                "runs": [r for k in ORDER for r in runs[k]],
            },
            indent=2,
        )
    )
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
