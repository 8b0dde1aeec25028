"""tunelab against TRL's DPOTrainer: LoRA DPO of SmolLM2-135M-Instruct on HH-RLHF pairs.

    python benchmarks/bench_dpo.py [--steps 20] [--batch-size 4] [--rows 400] [--out FILE]

Both tools train the same LoRA (r=16, alpha 32, all linear layers, dropout 0, the same seeded
initialisation: each process seeds, loads the weights, then calls PEFT's get_peft_model) on
the same weights (the GGUF converted once to a transformers folder), with the same rows in the
same batches in the same order (tunelab runs first with its default length-grouped sampler and
traces every step's rows; TRL then reads the rows in that order, sequentially), sigmoid DPO
with the same beta, the same learning rate, linear schedule, no warmup, no weight decay,
gradient clipping at 1.0, fp32 and N steps. Rows are drawn (seeded) from HH-RLHF helpful-base
among those whose prompt + longer response fit --max-length tokens, so neither tool truncates;
the report counts the rows whose prompt/chosen/rejected token ids agree between the tools
(TRL tokenizes prompt + response as one string, tunelab apart).

Measured, each tool in its own process: the per-step training loss (step 1 is ln 2 for both:
the policy starts as its reference), real (non-padding) tokens of both sequences of each pair
per second of training-step time, and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "preference" / "hh_rlhf_helpful_base_test.jsonl"
LORA = {"r": 16, "alpha": 32, "dropout": 0.0}


def model_dir() -> str:
    from tunelab.models.loading import model_path
    from tunelab.models.registry import resolve_model

    return model_path(resolve_model("smollm2-135m-instruct"))


def tunelab_ids(tok, row: dict) -> tuple[list[int], list[int], list[int]]:
    """Prompt, chosen and rejected token ids as tunelab's preference task makes them
    (chat template off, prompt as written: ``task.target_delimiter: ""``)."""
    eos = [tok.eos_token_id]
    p = tok(row["prompt"])["input_ids"]
    c = tok(row["chosen"], add_special_tokens=False)["input_ids"] + eos
    r = tok(row["rejected"], add_special_tokens=False)["input_ids"] + eos
    return p, c, r


def prepare(path: Path, n_rows: int, max_length: int, seed: int) -> dict:
    """Write the rows both tools train on (in file order; tunelab shuffles them)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir())
    rows = [json.loads(x) for x in DATA.open(encoding="utf-8")]
    random.Random(seed).shuffle(rows)
    out = []
    for r in rows:
        if r["chosen"].strip() == r["rejected"].strip() or not r["chosen"].strip():
            continue
        if not r["rejected"].strip():
            continue
        p, c, rj = tunelab_ids(tok, r)
        if len(p) + max(len(c), len(rj)) <= max_length:
            out.append({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]})
        if len(out) == n_rows:
            break
    path.write_text("".join(json.dumps(r) + "\n" for r in out), encoding="utf-8")
    return {"rows": len(out)}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_tunelab(args) -> dict:
    import tunelab

    res = tunelab.train(
        {
            "model": {"name": "smollm2-135m-instruct", "max_length": args.max_length},
            "data": {"train": args.data, "validation": args.validation},
            "task": {"type": "preference", "chat_template": "off", "target_delimiter": ""},
            "preference": {
                "loss": "dpo",
                "beta": args.beta,
                "generate": 0,
                "share_prompt": args.share_prompt == "on",
            },
            "method": "lora",
            "lora": {**LORA, "target_modules": "all-linear"},
            "training": {
                "max_steps": args.steps,
                "batch_size": args.batch_size,
                "lr": args.lr,
                "warmup_ratio": 0.0,
                "weight_decay": 0.0,
                "scheduler": "linear",
                "max_grad_norm": 1.0,
                "precision": "fp32",
                "log_every": 1,
                "eval_before": False,
                "eval_every": 10**6,
                "load_best": False,
                "save_checkpoints": False,
                "progress": False,
                "seed": args.seed,
                "trace_examples": True,
            },
            "output": {"dir": args.tmp, "name": "run", "overwrite": True},
        }
    )
    rows = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").open()]
    losses = [r["loss"] for r in rows if r.get("type") == "train"]
    order = [json.loads(x)["rows"] for x in (res.run_dir / "trace-rank0.jsonl").open()]
    return {"train_seconds": res.summary["train_seconds"], "losses": losses, "order": order}


def run_trl(args) -> dict:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, set_seed
    from trl import DPOConfig, DPOTrainer

    class InOrder(DPOTrainer):
        """The rows as the file lists them (the bench wrote them in tunelab's batch order)."""

        def _get_train_sampler(self, *a, **k):
            return torch.utils.data.SequentialSampler(self.train_dataset)

    class StepClock(TrainerCallback):
        seconds = 0.0

        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.seconds += time.perf_counter() - self.t0

    ds = load_dataset("json", data_files=args.data, split="train")
    cfg = DPOConfig(
        output_dir=args.tmp,
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        beta=args.beta,
        loss_type=["sigmoid"],
        max_length=args.max_length,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        bf16=False,
        use_cpu=True,
        seed=args.seed,
        dataloader_num_workers=0,
        gradient_checkpointing=False,
    )
    set_seed(args.seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir(), dtype=torch.float32)
    peft_cfg = LoraConfig(
        r=LORA["r"],
        lora_alpha=LORA["alpha"],
        lora_dropout=LORA["dropout"],
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, peft_cfg)
    tok = AutoTokenizer.from_pretrained(model_dir())
    clock = StepClock()
    trainer = InOrder(
        model=model, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[clock]
    )
    same = 0
    for row, ex in zip(ds, trainer.train_dataset):
        mine = tunelab_ids(tok, row)
        same += mine == (ex["prompt_ids"], ex["chosen_ids"], ex["rejected_ids"])
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"train_seconds": clock.seconds, "losses": losses, "same_tokens": same}


def worker(args) -> None:
    result = run_trl(args) if args.worker == "trl" else run_tunelab(args)
    result["peak_rss_mb"] = peak_rss_mb()
    Path(args.result).write_text(json.dumps(result))


def pair_tokens(path: Path) -> int:
    """Real tokens both sequences of every trained pair hold (prompt counted in each)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir())
    rows = [json.loads(x) for x in path.open(encoding="utf-8")]
    total = 0
    for r in rows:
        p, c, rj = tunelab_ids(tok, r)
        total += 2 * len(p) + len(c) + len(rj)
    return total


def launch(tool: str, data: Path, work: Path, args) -> dict:
    result = work / f"{tool}.json"
    cmd = [sys.executable, __file__, "--worker", tool, "--data", str(data)]
    cmd += ["--tmp", str(work / f"{tool}-out"), "--result", str(result)]
    cmd += ["--validation", str(work / "validation.jsonl")]
    for flag in ("steps", "batch_size", "lr", "beta", "seed", "max_length", "share_prompt"):
        cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    print(f"{tool} ...", flush=True)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{tool} failed (exit {proc.returncode})")
    return json.loads(result.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--rows", type=int, default=400, help="rows drawn (seeded) from HH helpful")
    ap.add_argument("--max-length", type=int, default=320)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--share-prompt",
        choices=("on", "off"),
        default="on",
        help="tunelab's preference.share_prompt (off: two rows per pair, as TRL)",
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dpo.json"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--validation", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0
    if not DATA.is_file():
        print(f"skipped: {DATA} is absent")
        return 0
    from rich.console import Console
    from rich.table import Table

    work = Path(args.out).parent / "dpo-work"
    work.mkdir(parents=True, exist_ok=True)
    pool = work / "rows.jsonl"
    info = prepare(pool, args.rows, args.max_length, args.seed)
    lines = pool.read_text(encoding="utf-8").splitlines(keepends=True)
    (work / "validation.jsonl").write_text("".join(lines[:8]), encoding="utf-8")  # not timed
    mine = launch("tunelab", pool, work, args)
    # the rows tunelab trained on, step by step, become TRL's file (read in order)
    rows = [json.loads(x) for x in pool.open(encoding="utf-8")]
    ordered = work / "rows-in-order.jsonl"
    trained = [rows[i - 1] for step in mine["order"] for i in step]
    ordered.write_text("".join(json.dumps(r) + "\n" for r in trained), encoding="utf-8")
    peer = launch("trl", ordered, work, args)
    tokens = pair_tokens(ordered)
    runs = {"tunelab": mine, "trl": peer}
    for r in runs.values():
        r["tokens_per_s"] = tokens / r["train_seconds"]
    t = Table(title=f"DPO losses per step (beta {args.beta}, batch {args.batch_size}, fp32)")
    for c in ("step", "tunelab", "trl", "|diff|"):
        t.add_column(c, justify="right")
    diffs = []
    for i, (a, b) in enumerate(zip(mine["losses"], peer["losses"]), 1):
        diffs.append(abs(a - b))
        t.add_row(str(i), f"{a:.6f}", f"{b:.6f}", f"{abs(a - b):.2e}")
    console = Console(width=120)
    console.print(t)
    agree = max(diffs[:10]) if diffs else float("nan")
    s = Table(
        title=f"LoRA DPO, SmolLM2-135M, HH-RLHF helpful: {len(trained)} pairs trained "
        f"({info['rows']} drawn), {tokens} tokens, {args.steps} steps"
    )
    for c in ("tool", "tokens/s", "peak RSS MB", "train s"):
        s.add_column(c, justify="left" if c == "tool" else "right")
    for tool, r in runs.items():
        s.add_row(
            tool, f"{r['tokens_per_s']:.1f}", f"{r['peak_rss_mb']:.0f}", f"{r['train_seconds']:.1f}"
        )
    speed = mine["tokens_per_s"] / peer["tokens_per_s"]
    memory = mine["peak_rss_mb"] / peer["peak_rss_mb"]
    s.add_row("tunelab / trl", f"{speed:.2f}x", f"{memory:.2f}x", "")
    console.print(s)
    print(
        f"step-1 loss: tunelab {mine['losses'][0]:.6f}, trl {peer['losses'][0]:.6f}, "
        f"ln 2 = {math.log(2):.6f}; max |diff| over the first 10 steps {agree:.2e} "
        f"({'within' if agree <= 1e-3 else 'NOT within'} 1e-3); rows with identical token "
        f"ids in both tools: {peer['same_tokens']}/{len(trained)}"
    )
    Path(args.out).write_text(
        json.dumps(
            {"data": info, "tokens": tokens, "runs": runs, "speed": speed, "memory": memory},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
