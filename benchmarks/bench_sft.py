"""tunelab against TRL's SFTTrainer: LoRA SFT of SmolLM2-135M-Instruct on XSum as chat.

    python benchmarks/bench_sft.py [--steps 30] [--batch-size 4] [--repeats 1] [--out FILE]

Both tools get the same rows (XSum articles clipped to 384 tokens, their summaries as the
assistant's answer, in SmolLM2's chat template), the same weights (the GGUF converted once to a
transformers folder: TRL refuses GGUF-loaded models), LoRA r=16 / alpha 32 on all linear layers,
the same learning rate, batch size, number of steps, maximum length (512), loss on the answer
only, and the same precision (--precision; `auto` = bf16 only on CPUs with native bf16). Every
run is its own process; the tools alternate (trl, tunelab, trl, ...) and the table shows medians.

TRL runs with its own defaults (SFTConfig turns gradient checkpointing on); `--tools` takes
variants: `trl:nockpt` turns it off, `tunelab:selective` / `tunelab:full` set tunelab's
`training.activation_checkpointing` (its default is `none`).

Measured: real (non-padding) training tokens per second of training-step time, peak RSS of the
process, the mean loss of the last five steps, and achieved GFLOP/s (4 x parameters x tokens:
forward plus the backward pass through the frozen weights; LoRA's own weight gradients are
negligible) against the fp32 and bf16 matmul peaks measured at start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "summarization" / "xsum_test_1k.jsonl"
PROMPT = "Summarize this article in one sentence.\n\n{document}"
LORA = {"r": 16, "alpha": 32, "dropout": 0.0}


def matmul_peak(dtype_name: str, n: int = 2048, reps: int = 10) -> float:
    """GFLOP/s of an n x n matmul in the given dtype (best of ``reps``)."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def model_dir() -> str:
    from tunelab.models.loading import model_path
    from tunelab.models.registry import resolve_model

    return model_path(resolve_model("smollm2-135m-instruct"))


def prepare(path: Path, n_rows: int, seed: int) -> dict:
    """Write the chat rows both tools train on; return their token count."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir())
    rows = [json.loads(x) for x in DATA.open(encoding="utf-8")]
    random.Random(seed).shuffle(rows)
    out, tokens = [], 0
    for r in rows[:n_rows]:
        ids = tok(r["document"], add_special_tokens=False)["input_ids"][:384]
        doc = tok.decode(ids)
        msgs = [
            {"role": "user", "content": PROMPT.format(document=doc)},
            {"role": "assistant", "content": r["summary"]},
        ]
        text = tok.apply_chat_template(msgs, tokenize=False)
        tokens += min(512, len(tok(text, add_special_tokens=False)["input_ids"]))
        out.append({"messages": msgs})
    path.write_text("".join(json.dumps(r) + "\n" for r in out), encoding="utf-8")
    return {"rows": len(out), "tokens": tokens}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_trl(args) -> dict:
    from datasets import load_dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    ds = load_dataset("json", data_files=args.data, split="train")
    ds = ds.map(
        lambda r: {"prompt": r["messages"][:1], "completion": r["messages"][1:]},
        remove_columns=["messages"],
    )
    bf16 = args.precision == "bf16"
    cfg = SFTConfig(
        output_dir=args.tmp,
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        bf16=bf16,
        use_cpu=True,
        max_length=512,
        completion_only_loss=True,
        seed=args.seed,
        dataloader_num_workers=0,
        **({"gradient_checkpointing": False} if args.variant == "nockpt" else {}),
    )
    peft_cfg = LoraConfig(
        r=LORA["r"],
        lora_alpha=LORA["alpha"],
        lora_dropout=LORA["dropout"],
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(model=model_dir(), args=cfg, train_dataset=ds, peft_config=peft_cfg)
    t0 = time.perf_counter()
    out = trainer.train()
    seconds = time.perf_counter() - t0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    n_params = sum(p.numel() for p in trainer.model.parameters())
    return {
        "train_seconds": seconds,
        "hf_train_runtime": out.metrics.get("train_runtime"),
        "final_loss": statistics.mean(losses[-5:]),
        "losses": losses,
        "params": n_params,
    }


def run_tunelab(args) -> dict:
    import tunelab

    res = tunelab.train(
        {
            "model": {"name": "smollm2-135m-instruct", "max_length": 512},
            "data": {"train": args.data, "validation": args.data},
            "task": {"type": "generation", "format": "chat", "eval_max_examples": 4},
            "method": "lora",
            "lora": {**LORA, "target_modules": "all-linear"},
            "training": {
                "max_steps": args.steps,
                "batch_size": args.batch_size,
                "lr": args.lr,
                "warmup_ratio": 0.0,
                "weight_decay": 0.0,
                "scheduler": "linear",
                "precision": args.precision,
                "log_every": 1,
                "eval_every": 10**6,
                "load_best": False,
                "save_checkpoints": False,
                "progress": False,
                "seed": args.seed,
                "activation_checkpointing": args.variant or "none",
            },
            "output": {"dir": args.tmp, "name": "run", "overwrite": True},
        }
    )
    rows = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").open()]
    losses = [r["loss"] for r in rows if r.get("type") == "train"]
    return {
        "train_seconds": res.summary["train_seconds"],
        "final_loss": statistics.mean(losses[-5:]),
        "losses": losses,
        "tunelab_tokens": res.summary["tokens"],
        "params": res.params["total"],
    }


def worker(args) -> None:
    import torch

    torch.manual_seed(args.seed)
    tool, _, args.variant = args.worker.partition(":")
    result = run_trl(args) if tool == "trl" else run_tunelab(args)
    result["peak_rss_mb"] = peak_rss_mb()
    Path(args.result).write_text(json.dumps(result))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    ap.add_argument(
        "--tools",
        default="trl,tunelab,tunelab:selective",
        help="comma-separated: trl, trl:nockpt, tunelab, tunelab:selective, tunelab:full",
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sft.json"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0
    if not DATA.is_file():
        print(f"skipped: {DATA} is absent")
        return 0
    from rich.console import Console
    from rich.table import Table

    from tunelab.api import choose_precision

    precision = choose_precision(args.precision)
    precision = "fp32" if precision == "no" else precision  # Accelerate calls fp32 "no"
    work = Path(args.out).parent / "sft-work"
    work.mkdir(parents=True, exist_ok=True)
    data = work / "rows.jsonl"
    info = prepare(data, args.steps * args.batch_size, args.seed)
    peaks = {d: matmul_peak(d) for d in ("fp32", "bf16")}
    tools = args.tools.split(",")
    known = {"trl", "trl:nockpt", "tunelab", "tunelab:none", "tunelab:selective", "tunelab:full"}
    if set(tools) - known:
        ap.error(f"--tools: unknown {sorted(set(tools) - known)}; known: {sorted(known)}")
    runs: dict[str, list[dict]] = {t: [] for t in tools}
    for rep in range(args.repeats):
        for tool in tools:
            result = work / f"{tool.replace(':', '-')}-{rep}.json"
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                tool,
                "--data",
                str(data),
                "--tmp",
                str(work / f"{tool.replace(':', '-')}-out"),
                "--result",
                str(result),
                "--steps",
                str(args.steps),
                "--batch-size",
                str(args.batch_size),
                "--lr",
                str(args.lr),
                "--seed",
                str(args.seed),
                "--precision",
                precision,
            ]
            print(f"[{rep + 1}/{args.repeats}] {tool} ...", flush=True)
            env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
            proc = subprocess.run(cmd, env=env)
            if proc.returncode != 0:
                print(f"{tool} failed (exit {proc.returncode})")
                return 1
            r = json.loads(result.read_text())
            r["tokens_per_s"] = info["tokens"] / r["train_seconds"]
            r["gflops"] = 4 * r["params"] * r["tokens_per_s"] / 1e9
            runs[tool].append(r)
    summary = {}
    for tool, rs in runs.items():
        summary[tool] = {
            k: statistics.median(r[k] for r in rs)
            for k in ("tokens_per_s", "peak_rss_mb", "final_loss", "gflops", "train_seconds")
        }
    t = Table(
        title=f"LoRA SFT, SmolLM2-135M, XSum chat: {info['rows']} rows, "
        f"{info['tokens']} tokens, {args.steps} steps, precision {precision}"
    )
    for c in (
        "tool",
        "tokens/s",
        "peak RSS MB",
        "final loss",
        "GFLOP/s",
        "% fp32 peak",
        "% bf16 peak",
    ):
        t.add_column(c, justify="left" if c == "tool" else "right")
    for tool, s in summary.items():
        t.add_row(
            tool,
            f"{s['tokens_per_s']:.1f}",
            f"{s['peak_rss_mb']:.0f}",
            f"{s['final_loss']:.3f}",
            f"{s['gflops']:.1f}",
            f"{100 * s['gflops'] / peaks['fp32']:.0f}",
            f"{100 * s['gflops'] / peaks['bf16']:.0f}",
        )
    for mine in (k for k in summary if k.startswith("tunelab")):
        for peer in (k for k in summary if k.startswith("trl")):
            a, b = summary[mine], summary[peer]
            t.add_row(
                f"{mine} / {peer}",
                f"{a['tokens_per_s'] / b['tokens_per_s']:.2f}x",
                f"{a['peak_rss_mb'] / b['peak_rss_mb']:.2f}x",
                "",
                "",
                "",
                "",
            )
    Console(width=120).print(t)
    print(f"matmul peak 2048x2048: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f}")
    Path(args.out).write_text(
        json.dumps(
            {
                "data": info,
                "peaks": peaks,
                "precision": precision,
                "runs": runs,
                "summary": summary,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
