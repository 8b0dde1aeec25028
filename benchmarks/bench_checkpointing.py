"""Activation checkpointing on one LoRA training step: none, selective and full, side by side.

    python benchmarks/bench_checkpointing.py [--steps 4] [--batch 4] [--length 470]

SmolLM2-135M-Instruct (the embedded GGUF, converted once) with PEFT LoRA r=16 on all linear
layers, fp32, one random batch of ``batch`` x ``length`` tokens, the LM head on the last 40
positions. Each mode runs in its own process (peak RSS is per process) for ``steps`` steps;
the table shows the mean time of all steps after the first two (warm-up), the peak RSS and the
gradient norm, which must agree across modes (recomputation changes no result).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def worker(mode: str, steps: int, batch: int, length: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunelab.models.loading import model_path
    from tunelab.models.registry import resolve_model
    from tunelab.training.recompute import enable_checkpointing

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(
        model_path(resolve_model("smollm2-135m-instruct")), dtype=torch.float32
    )
    if mode != "none":
        enable_checkpointing(base, mode)
    model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    model.train()
    ids = torch.randint(0, 49000, (batch, length), generator=torch.Generator().manual_seed(1))
    keep = torch.arange(length - 40, length - 1)
    times = []
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        t = time.perf_counter()
        logits = model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits
        logits.float().logsumexp(-1).mean().backward()
        times.append(time.perf_counter() - t)
    grads = [p.grad.double().norm() ** 2 for p in model.parameters() if p.grad is not None]
    return {
        "mode": mode,
        "step_s": sum(times[2:]) / max(1, len(times[2:])),
        "times": times,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "grad_norm": float(sum(grads) ** 0.5),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--length", type=int, default=470)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.steps < 3:
        ap.error("--steps: at least 3 (the first two are warm-up)")
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.batch, args.length)))
        return 0
    from rich.console import Console
    from rich.table import Table

    rows = []
    for mode in ("none", "selective", "full"):
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            mode,
            "--steps",
            str(args.steps),
            "--batch",
            str(args.batch),
            "--length",
            str(args.length),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"{mode}: {rows[-1]['step_s']:.2f} s/step", flush=True)
    t = Table(title=f"LoRA step, SmolLM2-135M, {args.batch}x{args.length} tokens, fp32")
    for c in ("checkpointing", "s/step", "vs none", "peak RSS MB", "vs none", "grad norm"):
        t.add_column(c, justify="left" if c == "checkpointing" else "right")
    ref = rows[0]
    for r in rows:
        t.add_row(
            r["mode"],
            f"{r['step_s']:.2f}",
            f"{r['step_s'] / ref['step_s'] - 1:+.0%}",
            f"{r['peak_rss_mb']:.0f}",
            f"{r['peak_rss_mb'] / ref['peak_rss_mb'] - 1:+.0%}",
            f"{r['grad_norm']:.6g}",
        )
    Console(width=120).print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
