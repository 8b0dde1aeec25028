"""tunelab's own scoring against lm-evaluation-harness on the same rows, in one invocation.

    python benchmarks/bench_eval.py [--rows 400] [--docs 6] [--batch 8] [--precision fp32]
                                    [--repeats 3]
    python benchmarks/bench_eval.py --interleave 48     # BoolQ, both tools in one process

SmolLM2-135M-Instruct (the embedded GGUF, converted once). BoolQ: the first ``rows`` rows of
``../shared/data/boolq/dev_2000.jsonl`` with lm-eval's prompt and choices; WikiText-2: the first
``docs`` pages of the test file, detokenized, each scored from its start. tunelab runs
``suites/lm_eval_parity.yaml``; lm-eval runs its own task definitions (``lm_eval_tasks/``) through
``tunelab eval --lm-eval`` on the same loaded model, with glibc's allocator defaults, as lm-eval's
own command line runs. Each tool runs in its own process. Printed:
the metrics side by side, per-row agreement (choices, largest log-likelihood difference),
wall time, scoring time and tokens/s for both, and the tunelab/lm-eval ratios. The tools run
alternately ``repeats`` times per task (lm-eval, tunelab, lm-eval, ...): this shared machine's
speed drifts by 20 % and more within minutes, so each pair's ratio is printed and the table
shows the median run of each tool. lm-eval's scoring time is its requests alone (``HFLM``'s
``loglikelihood`` / ``loglikelihood_rolling``), tunelab's its task evaluation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"


def _suite(tmp: Path, task: str, limit: int) -> Path:
    suite = yaml.safe_load((ROOT / "suites/lm_eval_parity.yaml").read_text())
    keep = [t for t in suite["tasks"] if t["name"] == task]
    for t in keep:
        t["limit"] = limit
        t["data"] = str((ROOT / "suites" / t["data"]).resolve())
    suite["tasks"], suite["name"] = keep, f"parity_{task}"
    path = tmp / f"{task}.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def worker(tool: str, task: str, limit: int, batch: int, precision: str, out: Path) -> dict:
    t0 = time.perf_counter()
    if tool == "tunelab":
        from tunelab.workflows.suite import run_suite

        res = run_suite(
            MODEL, _suite(out, task, limit), output=out, batch_size=batch, precision=precision
        )
        entry = next(iter(res["tasks"].values()))
        rows = []
        if task == "boolq":
            pred = out / f"suite-parity_{task}-{task}.jsonl"
            rows = [json.loads(x)["loglikelihoods"] for x in pred.open()]
        return {
            "wall_s": time.perf_counter() - t0,
            "score_s": entry["forward"]["seconds"],
            "tokens": entry["forward"]["tokens"],
            "metrics": entry["clean"],
            "rows": rows,
        }
    from tunelab.workflows.lm_eval_backend import run_lm_eval

    res, _ = run_lm_eval(
        MODEL,
        [f"{task}_local"],
        ROOT / "lm_eval_tasks",
        limit=limit,
        batch_size=batch,
        output=out,
        max_length=2048,
        precision=precision,
        keep_freed_memory=False,  # lm-eval as its own command line runs it
    )
    entry = res["tasks"][f"{task}_local"]
    rows = [r["loglikelihoods"] for r in sorted(entry["rows"], key=lambda r: r["doc_id"])]
    return {
        "wall_s": time.perf_counter() - t0,
        "score_s": res["request_seconds"],
        "evaluate_s": res["seconds"],
        "metrics": entry["clean"],
        "rows": rows,
    }


def interleaved(rows: int, chunk: int, batch: int, precision: str) -> int:
    """BoolQ scoring by both tools in one process on one loaded model, chunk by chunk.

    The rows are sorted longest first (as each tool orders a whole run) and cut into chunks of
    ``chunk`` rows; each chunk is scored by lm-eval's ``HFLM.loglikelihood`` (its requests:
    context and " no" / " yes"), by tunelab's ``choice_loglikelihoods`` (what its suite task
    calls) and by the same with padding-capped batches off (``min_fill=0``), in a rotating
    order. Drift of the machine's speed then falls on all three alike, and so does the
    allocator setting (freed memory kept, as ``tunelab eval --lm-eval`` runs lm-eval too).
    Printed: each arm's total seconds, the ratios, the median of the per-chunk ratios, and
    per-row agreement.
    """
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from tunelab.evaluation import choice
    from tunelab.models.layers import causal_sdpa
    from tunelab.tasks.lm_scoring import encode_choices
    from tunelab.utils.memory import retain_freed_memory
    from tunelab.workflows.generate import load_generation_target
    from tunelab.workflows.lm_eval_backend import _positional

    if rows < 1 or chunk < 1:
        raise SystemExit("--interleave: needs --rows >= 1 and CHUNK >= 1")
    retain_freed_memory()  # one process: both tools score with freed memory kept
    t = load_generation_target(MODEL, False, precision=precision)
    model, tok = t.accelerator.unwrap_model(t.model).eval(), t.tokenizer
    lm = HFLM(pretrained=_positional(model), tokenizer=tok, batch_size=batch, max_length=2048)
    with open(ROOT.parent / "shared/data/boolq/dev_2000.jsonl", encoding="utf-8") as fh:
        docs = [json.loads(x) for x in fh][:rows]
    prompt = "{passage}\nQuestion: {question}?\nAnswer:"
    choices = [" no", " yes"]
    # longest first, as both tools order a whole run: each chunk then holds the rows that a
    # whole run batches together, and padding is what it is there
    docs.sort(key=lambda d: -len(tok(prompt.format(**d))["input_ids"]))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    no_mask = causal_sdpa(model)

    def lm_eval_arm(part):
        reqs = [
            Instance("loglikelihood", d, (prompt.format(**d), c), j, ("boolq", i, 1))
            for i, d in enumerate(part)
            for j, c in enumerate(choices)
        ]
        out = [x[0] for x in lm.loglikelihood(reqs, disable_tqdm=True)]
        return [out[2 * i : 2 * i + 2] for i in range(len(part))]

    def tunelab_arm(part, min_fill=choice.MIN_FILL):
        enc = [encode_choices(tok, prompt.format(**d), choices) for d in part]
        return choice.choice_loglikelihoods(
            model,
            [p for p, _ in enc],
            [c for _, c in enc],
            pad,
            batch,
            "cpu",
            causal_mask_only=no_mask,
            min_fill=min_fill,
        )

    arms = {
        "lm-eval": lm_eval_arm,
        "tunelab": tunelab_arm,
        "tunelab, no padding cap": lambda part: tunelab_arm(part, 0.0),
    }
    names = list(arms)
    secs = {n: [] for n in names}
    lls = {n: [] for n in names}
    for c, start in enumerate(range(0, len(docs), chunk)):
        part = docs[start : start + chunk]
        for n in names[c % 3 :] + names[: c % 3]:  # rotate which arm goes first
            t0 = time.perf_counter()
            with t.accelerator.autocast():  # as both tools' own paths run (fp32: a no-op)
                lls[n].extend(arms[n](part))
            secs[n].append(time.perf_counter() - t0)
        print(f"chunk {c}: " + ", ".join(f"{n} {secs[n][-1]:.1f} s" for n in names), flush=True)
    ref = lls["lm-eval"]
    print(
        f"\nBoolQ first {len(docs)} rows, {precision}, batch {batch}, chunks of {chunk}, "
        "one process"
    )
    for n in names:
        agree = sum(
            max(range(2), key=a.__getitem__) == max(range(2), key=b.__getitem__)
            for a, b in zip(lls[n], ref)
        )
        worst = max(abs(x - y) for a, b in zip(lls[n], ref) for x, y in zip(a, b))
        total = sum(secs[n])
        median = statistics.median(a / b for a, b in zip(secs["lm-eval"], secs[n]))
        print(
            f"{n:24s} {total:7.1f} s  lm-eval/this {sum(secs['lm-eval']) / total:5.2f}x  "
            f"median chunk ratio {median:5.2f}x  agreement {agree}/{len(ref)}, "
            f"largest difference {worst:.2e}"
        )
    return 0


def _median(rs: list[dict]) -> dict:
    """The run with the median scoring time (the lower middle one of an even count)."""
    return sorted(rs, key=lambda r: r["score_s"])[(len(rs) - 1) // 2]


def run(tool: str, task: str, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            tool,
            task,
            str(args.rows if task == "boolq" else args.docs),
            str(args.batch),
            args.precision,
            tmp,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{tool} {task} failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=400)
    ap.add_argument("--docs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs per tool and task")
    ap.add_argument(
        "--interleave",
        type=int,
        metavar="CHUNK",
        help="BoolQ only: both tools in one process, alternating chunk by chunk of CHUNK rows",
    )
    ap.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.interleave is not None:
        return interleaved(args.rows, args.interleave, args.batch, args.precision)
    if args.worker:
        tool, task, limit, batch, precision, out = args.worker
        print(json.dumps(worker(tool, task, int(limit), int(batch), precision, Path(out))))
        return 0
    from transformers import AutoTokenizer

    from tunelab.models.loading import model_path
    from tunelab.models.registry import resolve_model

    tok = AutoTokenizer.from_pretrained(model_path(resolve_model(MODEL)))
    repeats = max(args.repeats, 1)
    runs: dict[tuple[str, str], list[dict]] = {}
    for task in ("boolq", "wikitext"):
        for _ in range(repeats):
            for tool in ("lm-eval", "tunelab"):
                runs.setdefault((tool, task), []).append(run(tool, task, args))
    res = {key: _median(rs) for key, rs in runs.items()}
    with open(ROOT.parent / "shared/data/boolq/dev_2000.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(x) for x in fh]
    prompt = "{passage}\nQuestion: {question}?\nAnswer:"
    boolq_tokens = sum(len(tok(prompt.format(**r))["input_ids"]) for r in rows[: args.rows])
    ours, theirs = res[("tunelab", "boolq")]["rows"], res[("lm-eval", "boolq")]["rows"]
    agree = sum(
        max(range(2), key=a.__getitem__) == max(range(2), key=b.__getitem__)
        for a, b in zip(ours, theirs)
    )
    worst = max(abs(x - y) for a, b in zip(ours, theirs) for x, y in zip(a, b))
    print(
        f"\nSmolLM2-135M-Instruct, {args.precision}, batch {args.batch}; BoolQ first "
        f"{args.rows} rows ({boolq_tokens:,} prompt tokens), WikiText-2 first {args.docs} pages"
    )
    print(
        f"BoolQ per-row agreement: {agree}/{len(ours)} choices; largest log-likelihood "
        f"difference {worst:.2e} nats"
    )
    print(f"{'task':9s} {'metric':16s} {'lm-eval':>10s} {'tunelab':>10s} {'rel diff':>9s}")
    for task, keys in (
        ("boolq", ("acc", "acc_norm")),
        ("wikitext", ("word_perplexity", "byte_perplexity", "bits_per_byte")),
    ):
        for k in keys:
            a, b = res[("lm-eval", task)]["metrics"][k], res[("tunelab", task)]["metrics"][k]
            print(f"{task:9s} {k:16s} {a:10.4f} {b:10.4f} {abs(b - a) / max(abs(a), 1e-12):9.2e}")
    print(
        f"\n{'task':9s} {'tool':8s} {'wall s':>8s} {'ratio':>6s} {'scoring s':>10s} "
        f"{'tokens/s':>9s} {'ratio':>6s}"
    )
    tokens = {"boolq": boolq_tokens, "wikitext": None}
    for task in ("boolq", "wikitext"):
        lm = res[("lm-eval", task)]
        for tool in ("lm-eval", "tunelab"):
            r = res[(tool, task)]
            n = tokens[task] or res[("tunelab", task)]["tokens"]
            tps = f"{n / r['score_s']:9.0f}" if n else f"{'':9s}"
            print(
                f"{task:9s} {tool:8s} {r['wall_s']:8.1f} {lm['wall_s'] / r['wall_s']:5.2f}x "
                f"{r['score_s']:10.1f} {tps} {lm['score_s'] / r['score_s']:5.2f}x"
            )
    print(
        "wall: the worker process from start to end, loading the model included; scoring: "
        "lm-eval's requests (loglikelihood / loglikelihood_rolling), tunelab's task evaluation"
    )
    print(f"\nscoring ratio of each alternating pair (lm-eval s / tunelab s), {repeats} pairs:")
    for task in ("boolq", "wikitext"):
        pairs = zip(runs[("lm-eval", task)], runs[("tunelab", task)])
        shown = ", ".join(
            f"{a['score_s']:.1f}/{b['score_s']:.1f} = {a['score_s'] / b['score_s']:.2f}x"
            for a, b in pairs
        )
        print(f"{task:9s} {shown}")
    evaluate = {t: res[("lm-eval", t)]["evaluate_s"] for t in ("boolq", "wikitext")}
    print(
        "lm-eval's whole simple_evaluate (median run): "
        + ", ".join(f"{t} {s:.1f} s" for t, s in evaluate.items())
    )
    # Achieved forward GFLOP/s, counted as bench_sft counts training's (there 4 x parameters x
    # tokens for forward and backward; here 2 x the matmul parameters x tokens for a forward):
    # BoolQ's LM head runs at one position per row, WikiText's at every token.
    from transformers import AutoModelForCausalLM

    from bench_sft import matmul_peak

    model = AutoModelForCausalLM.from_pretrained(model_path(resolve_model(MODEL)))
    total = sum(p.numel() for p in model.parameters())
    body = total - model.get_input_embeddings().weight.numel()
    peak = matmul_peak("fp32")
    print(f"\nfp32 matmul peak (2048 x 2048, measured now): {peak:.0f} GFLOP/s")
    for task, params in (("boolq", body), ("wikitext", total)):
        for tool in ("lm-eval", "tunelab"):
            r = res[(tool, task)]
            n = tokens[task] or res[("tunelab", task)]["tokens"]
            gflops = 2 * params * n / r["score_s"] / 1e9
            print(
                f"{task:9s} {tool:8s} {gflops:6.1f} GFLOP/s = {100 * gflops / peak:3.0f} % of peak"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
