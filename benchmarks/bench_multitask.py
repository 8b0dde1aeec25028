"""FLAN-style multi-task benchmark: samplers against single-task models, and replay against
forgetting.

    python benchmarks/bench_multitask.py [--steps 40] [--eval-rows 30] [--only NAME ...] [--out DIR]

Runs ``configs/flan_mix_smollm2_lora.yaml`` (SmolLM2-135M-Instruct + LoRA; SST-2 4,000 / XQuAD
800 / XSum 800 / Multi30k 400 training rows) as:

- one multi-task model per sampler: ``proportional``, ``temperature`` (T=2), ``uniform``;
- the temperature mixture plus replay: WikiText-2 *test* text mixed in as a fifth task
  (the probe reads WikiText-2 *valid*, so replayed and probed text differ);
- one single-task model per task (without the probes).

Every run takes the same number of optimizer steps (``--steps``, batch 8) in its own process;
every run scores each task it learned on the same held-out rows (``--eval-rows`` per task); the
mixtures also score the general-ability probes (WikiText-2 perplexity, BoolQ accuracy by log-likelihood choice) before and after. The
script prints one table and writes ``results.json`` in ``--out``. Needs ``../shared/data``.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "flan_mix_smollm2_lora.yaml"
DATA = ROOT.parent / "shared" / "data"
PRIMARY = {"sst2": "acc", "xquad": "squad_f1", "xsum": "rougeL", "multi30k": "bleu"}
REPLAY = {
    "name": "replay",
    "data": {
        "train": str(DATA / "wikitext2" / "wiki.test.tokens.jsonl"),
        "validation_fraction": 0.05,
    },
    "task": {"format": "text", "fields": {"text": "text"}, "eval_max_examples": 8},
}


def variants(base: dict) -> dict[str, dict]:
    out = {}
    for strategy in ("proportional", "temperature", "uniform"):
        cfg = copy.deepcopy(base)
        cfg["mixture"]["strategy"] = strategy
        out[f"mix-{strategy}"] = cfg
    cfg = copy.deepcopy(base)
    cfg["mixture"]["strategy"] = "temperature"
    cfg["mixture"]["tasks"].append(copy.deepcopy(REPLAY))
    out["mix-temperature+replay"] = cfg
    for task in base["mixture"]["tasks"]:
        cfg = copy.deepcopy(base)
        cfg["mixture"]["tasks"] = [copy.deepcopy(task)]
        cfg["probes"] = []  # the forgetting comparison is between the mixtures
        out[f"single-{task['name']}"] = cfg
    return out


def train_variant(name: str, cfg: dict, out: Path) -> tuple[dict, float]:
    """Train ``cfg`` as ``OUT/runs/NAME`` in its own process; its run.json and wall seconds."""
    path = out / f"{name}.yaml"
    cfg["output"] = {"dir": str(out / "runs"), "name": name, "overwrite": True}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "tunelab.cli", "train", str(path), "training.progress=false"]
    with open(out / f"{name}.log", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed; see {out / f'{name}.log'}")
    info = json.loads((out / "runs" / name / "run.json").read_text())
    return info, time.perf_counter() - t0


def run_all(configs: dict[str, dict], only: list[str] | None, out: Path, run_one) -> dict:
    """``run_one(name, cfg, out)`` for each chosen variant in turn; ``results.json`` after each."""
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, cfg in configs.items():
        if only and name not in only:
            continue
        print(f"=== {name}", flush=True)
        results[name] = run_one(name, cfg, out)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    return results


def run(name: str, cfg: dict, out: Path) -> dict:
    info, wall = train_variant(name, cfg, out)
    final = info["final"]["validation"]
    probes = info["summary"].get("probes", {})
    return {
        "scores": {t: final.get(f"{t}/{m}") for t, m in PRIMARY.items()},
        "losses": {t: final.get(f"{t}/loss") for t in PRIMARY},
        "probes": {
            "wikitext2_ppl_before": probes.get("wikitext2", {}).get("before", {}).get("perplexity"),
            "wikitext2_ppl_after": probes.get("wikitext2", {}).get("after", {}).get("perplexity"),
            "boolq_acc_before": probes.get("boolq", {}).get("before", {}).get("acc"),
            "boolq_acc_after": probes.get("boolq", {}).get("after", {}).get("acc"),
        },
        "wall_seconds": round(wall, 1),
        "train_seconds": round(info["summary"]["train_seconds"], 1),
        "steps": info["summary"]["steps"],
        "mix": _last_mix(out / "runs" / name / "metrics.jsonl"),
    }


def _last_mix(path: Path) -> dict | None:
    mix = None
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("type") == "train" and "mix" in row:
            mix = row["mix"]
    return mix


def table(results: dict[str, dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="FLAN-style mixture on SmolLM2-135M + LoRA (same steps for every run)")
    t.add_column("run")
    for task, metric in PRIMARY.items():
        t.add_column(f"{task} {metric}", justify="right")
    for c in ("WikiText-2 ppl Δ", "BoolQ acc Δ", "train s"):
        t.add_column(c, justify="right")

    def f(x, fmt="{:.2f}"):
        return "—" if x is None else fmt.format(x)

    for name, r in results.items():
        p = r["probes"]
        dppl = (
            None
            if p["wikitext2_ppl_after"] is None
            else p["wikitext2_ppl_after"] - p["wikitext2_ppl_before"]
        )
        dem = None if p["boolq_acc_after"] is None else p["boolq_acc_after"] - p["boolq_acc_before"]
        t.add_row(
            name,
            *[f(r["scores"][k]) for k in PRIMARY],
            f(dppl, "{:+.3f}"),
            f(dem, "{:+.1f}"),
            f(r["train_seconds"], "{:.0f}"),
        )
    Console().print(t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--eval-rows", type=int, default=30)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "multitask"))
    p.add_argument("--only", nargs="*", help="run only these variants (names as printed)")
    args = p.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent")
        return
    base = yaml.safe_load(CONFIG.read_text())
    base["training"]["max_steps"] = args.steps
    base["task"]["eval_max_examples"] = args.eval_rows
    for spec in base["mixture"]["tasks"]:  # the config's paths are relative to the repo root
        for key in ("train", "validation"):
            if key in spec["data"]:
                spec["data"][key] = str((ROOT / spec["data"][key]).resolve())
    for spec in base["probes"]:
        spec["data"]["validation"] = str((ROOT / spec["data"]["validation"]).resolve())
    results = run_all(variants(base), args.only, Path(args.out), run)
    table(results)
    smallest = "multi30k"
    for key in ("scores", "losses"):
        by = {k: v[key][smallest] for k, v in results.items() if k.startswith("mix-")}
        print(
            f"smallest task ({smallest}) {'BLEU' if key == 'scores' else 'loss'} by sampler: {by}"
        )


if __name__ == "__main__":
    main()
