"""Forgetting and its two mitigations: replay and L2-SP, against the same run without them.

    python benchmarks/bench_forgetting.py [--steps 60] [--lr 3e-4] [--l2sp 300] [--replay 0.25]
                                          [--only NAME ...] [--out DIR]

Full fine-tuning of SmolLM2-135M-Instruct on English→German translation (Multi30k, 2,000
training rows, batch 8) moves the model away from English text. Each variant takes the same
optimizer steps in its own process and scores the same general-ability probes before and after
training: WikiText-2 perplexity (validation paragraphs, seeded sample) and BoolQ accuracy by
log-likelihood choice. Variants:

- ``plain``: Multi30k only;
- ``replay``: a ``--replay`` share of each batch drawn from WikiText-2 *train*-side text (the
  test file; the probe reads the validation file, so replayed and probed text differ);
- ``l2sp``: Multi30k only, with ``training.l2sp = --l2sp`` (weights pulled toward their
  pretrained values each step).

Prints one table (Multi30k BLEU after training, each probe before → after and its delta) and
writes ``results.json`` in ``--out``. Needs ``../shared/data``; skips cleanly without it.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from bench_multitask import run_all, train_variant

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def base_config(args) -> dict:
    return {
        "model": {"name": "smollm2-135m-instruct", "max_length": 128},
        "task": {"type": "generation", "format": "template", "eval_max_examples": args.eval_rows},
        "mixture": {
            "strategy": "weights",
            "tasks": [
                {
                    "name": "multi30k",
                    "data": {
                        "train": str(DATA / "translation" / "multi30k_en_de_train.jsonl"),
                        "validation": str(DATA / "translation" / "multi30k_en_de_test2016.jsonl"),
                        "max_train_rows": 2000,
                    },
                    "task": {"template": "translation", "metrics": ["bleu"], "max_new_tokens": 40},
                    "weight": 1.0,
                }
            ],
        },
        "probes": [
            {
                "name": "wikitext2",
                "data": {"validation": str(DATA / "wikitext2" / "wiki.valid.tokens.jsonl")},
                "task": {
                    "format": "text",
                    "fields": {"text": "text"},
                    "eval_max_examples": args.probe_rows,
                },
            },
            {
                "name": "boolq",
                "data": {"validation": str(DATA / "boolq" / "dev_2000.jsonl")},
                "task": {
                    "template": "yesno",
                    "metrics": ["choice"],
                    "choices": ["no", "yes"],
                    "eval_max_examples": args.probe_rows,
                },
            },
        ],
        "method": "full",
        "training": {
            "max_steps": args.steps,
            "batch_size": 8,
            "eval_batch_size": 16,
            "lr": args.lr,
            "warmup_ratio": 0.05,
            "eval_before": False,
            "save_checkpoints": False,
            "seed": 42,
        },
    }


def variants(args) -> dict[str, dict]:
    base = base_config(args)
    out = {"plain": base}
    cfg = copy.deepcopy(base)
    cfg["mixture"]["tasks"][0]["weight"] = 1.0 - args.replay
    cfg["mixture"]["tasks"].append(
        {
            "name": "replay",
            "data": {
                "train": str(DATA / "wikitext2" / "wiki.test.tokens.jsonl"),
                "validation_fraction": 0.05,
            },
            "task": {"format": "text", "fields": {"text": "text"}, "eval_max_examples": 8},
            "weight": args.replay,
        }
    )
    out["replay"] = cfg
    for alpha in args.l2sp:
        cfg = copy.deepcopy(base)
        cfg["training"]["l2sp"] = alpha
        out[f"l2sp-{alpha:g}"] = cfg
    return out


def run(name: str, cfg: dict, out: Path) -> dict:
    info, wall = train_variant(name, cfg, out)
    probes = info["summary"].get("probes", {})
    return {
        "bleu": info["final"]["validation"].get("multi30k/bleu"),
        "probes": probes,
        "wall_seconds": round(wall, 1),
        "train_seconds": round(info["summary"]["train_seconds"], 1),
        "steps": info["summary"]["steps"],
    }


def table(results: dict[str, dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="Forgetting on SmolLM2-135M, full fine-tuning on Multi30k en→de")
    for c in (
        "run",
        "Multi30k BLEU",
        "WikiText-2 ppl before → after",
        "Δ ppl",
        "BoolQ acc before → after",
        "Δ acc",
        "Δ BoolQ answer loss",
        "train s",
    ):
        t.add_column(c, justify="left" if c == "run" else "right")
    for name, r in results.items():
        w = r["probes"].get("wikitext2", {})
        b = r["probes"].get("boolq", {})
        t.add_row(
            name,
            f"{r['bleu']:.2f}" if r["bleu"] is not None else "—",
            f"{w['before']['perplexity']:.2f} → {w['after']['perplexity']:.2f}",
            f"{w['delta']['perplexity']:+.2f}",
            f"{b['before']['acc']:.1f} → {b['after']['acc']:.1f}",
            f"{b['delta']['acc']:+.1f}",
            f"{b['delta']['loss']:+.3f}",
            f"{r['train_seconds']:.0f}",
        )
    Console().print(t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--l2sp", type=float, nargs="+", default=[300.0])
    p.add_argument("--replay", type=float, default=0.25, help="replay share of each batch")
    p.add_argument("--eval-rows", type=int, default=30, help="Multi30k rows scored")
    p.add_argument("--probe-rows", type=int, default=60, help="rows per probe")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "forgetting"))
    p.add_argument("--only", nargs="*", help="run only these variants (names as printed)")
    args = p.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent")
        return
    table(run_all(variants(args), args.only, Path(args.out), run))


if __name__ == "__main__":
    main()
