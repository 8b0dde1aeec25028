"""The `tunelab` command: a thin map from subcommands to :mod:`tunelab.api` functions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _overrides_help() -> str:
    from tunelab.config import config_help

    return "config keys (set in YAML or as key=value):\n" + config_help()


def _cmd_demo(args) -> int:
    from tunelab.demo import run_demo

    res = run_demo(args.overrides)
    before = (res.before or {}).get("accuracy")
    after = res.metrics["accuracy"]
    test = (res.test_metrics or {}).get("accuracy")
    if before is not None:
        print(f"accuracy before (untrained head): {before:.3f}")
    print(
        f"accuracy after:  {after:.3f} (validation)"
        + (f", {test:.3f} (test)" if test is not None else "")
    )
    print(f"run directory: {res.run_dir}")
    return 0


def _cmd_train(args) -> int:
    from tunelab.api import train

    overrides = list(args.overrides)
    if args.resume:
        overrides.append("resume=true")
    res = train(args.config, overrides)
    print(f"run directory: {res.run_dir}")
    return 0


def _cmd_report(args) -> int:
    from tunelab.reporting.report import build_report

    print(f"report: {build_report(args.runs, args.output, overwrite=args.overwrite)}")
    return 0


def _cmd_human_export(args) -> int:
    from tunelab.evaluation.human import export_sheet

    paths = export_sheet(args.runs, args.output, n=args.n, split=args.split, seed=args.seed,
                         overwrite=args.overwrite)  # fmt: skip
    print(f"rating sheet: {paths['csv']} and {paths['jsonl']}; key (keep from raters): "
          f"{paths['key']}")  # fmt: skip
    return 0


def _cmd_human_import(args) -> int:
    from tunelab.evaluation.human import import_ratings

    rep = import_ratings(args.key, args.sheets)
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"human ratings · {len(rep['raters'])} rater(s) · {rep['items']} items")
    for c in ("criterion", "result", "krippendorff α", "cohen κ"):
        t.add_column(c)
    for name, e in rep["criteria"].items():
        if "mean" in e:
            res = f"{e['mean']:.2f} [{e['ci_low']:.2f}, {e['ci_high']:.2f}] (n={e['n']})"
        elif "win_rate" in e:
            res = ", ".join(f"{k}: {v:.0%}" for k, v in e["win_rate"].items())
        else:
            res = "no ratings"
        alpha = e.get("krippendorff_alpha")
        kappa = e.get("cohen_kappa")
        t.add_row(name, res, "—" if alpha is None else f"{alpha:.3f}",
                  "—" if kappa is None else f"{kappa:.3f}")  # fmt: skip
    Console().print(t)
    return 0


def _cmd_eval(args) -> int:
    from tunelab.api import evaluate

    if args.suite:
        from rich.console import Console

        from tunelab.evaluation.suite import dumps, run_suite

        res = run_suite(args.run_dir, args.suite, output=args.output, batch_size=args.batch_size,
                        trust_remote_code=args.trust_remote_code,
                        console=None if args.json else Console())  # fmt: skip
        if args.json:
            print(dumps(res))
        else:
            print(f"written: {res['_written']}")
        return 0

    cols = {
        k: v
        for k, v in (
            ("text_column", args.text_column),
            ("label_column", args.label_column),
            ("text_pair_column", args.text_pair_column),
        )
        if v
    }
    m = evaluate(
        args.run_dir,
        split=args.split,
        file=args.file,
        columns=cols,
        batch_size=args.batch_size,
        trust_remote_code=args.trust_remote_code,
    )
    if args.json:
        print(json.dumps(m, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{args.file or args.split} · n={m['n']}")
    for c in ("label", "precision", "recall", "f1", "support"):
        t.add_column(c, justify="right" if c != "label" else "left")
    for name, pc in m["per_class"].items():
        t.add_row(
            name,
            f"{pc['precision']:.4f}",
            f"{pc['recall']:.4f}",
            f"{pc['f1']:.4f}",
            str(pc["support"]),
        )
    t.add_row(
        "macro",
        f"{m['precision_macro']:.4f}",
        f"{m['recall_macro']:.4f}",
        f"{m['f1_macro']:.4f}",
        str(m["n"]),
    )
    con = Console()
    con.print(t)
    con.print(f"accuracy {m['accuracy']:.4f} · written to {m['_written']}")
    return 0


def _cmd_predict(args) -> int:
    from tunelab.api import predict
    from tunelab.errors import RunDirError

    if args.output and Path(args.output).exists() and not args.overwrite:
        raise RunDirError(f"{args.output} exists; pass --overwrite to replace it")
    rows = predict(
        args.run_dir,
        texts=args.text,
        file=args.file,
        text_pairs=args.text_pair,
        trust_remote_code=args.trust_remote_code,
    )
    if args.output:
        from tunelab.utils.io import atomic_write_jsonl

        atomic_write_jsonl(args.output, rows)
        print(f"{len(rows)} predictions written to {args.output}")
        return 0
    for r in rows:
        if args.json:
            print(json.dumps(r, ensure_ascii=False))
        else:
            probs = "  ".join(f"{k}={v:.3f}" for k, v in r["probabilities"].items())
            print(f"{r['label']}\t{probs}\t{r['text']}")
    return 0


def _gen_overrides(args) -> dict:
    return {
        "max_new_tokens": args.max_new_tokens,
        "num_beams": args.num_beams,
        "do_sample": True if args.sample else None,
        "temperature": args.temperature,
        "top_p": args.top_p,
    }


def _cmd_generate(args) -> int:
    from tunelab.api import generate
    from tunelab.data.sources import read_table
    from tunelab.data.templates import get_path
    from tunelab.errors import DataError, RunDirError

    if args.output and Path(args.output).exists() and not args.overwrite:
        raise RunDirError(f"{args.output} exists; pass --overwrite to replace it")
    prompts = list(args.prompt or [])
    if args.file:
        table = read_table(args.file)
        prompts = [get_path(r, args.column) for r in table.rows]
        bad = [i for i, p in zip(table.row_ids, prompts) if not isinstance(p, str) or not p.strip()]
        if bad:
            raise DataError(
                f"{args.file}: column {args.column!r} is missing or empty in rows {bad[:5]}"
            )
    outs = generate(args.target, prompts, batch_size=args.batch_size,
                    trust_remote_code=args.trust_remote_code, **_gen_overrides(args))  # fmt: skip
    rows = [{"prompt": p, "generation": o} for p, o in zip(prompts, outs)]
    if args.output:
        from tunelab.utils.io import atomic_write_jsonl

        atomic_write_jsonl(args.output, rows)
        print(f"{len(rows)} generations written to {args.output}")
        return 0
    for r in rows:
        print(json.dumps(r, ensure_ascii=False) if args.json else r["generation"])
    return 0


def _cmd_chat(args) -> int:
    from tunelab.api import _generator

    task, model, acc = _generator(args.target, args.trust_remote_code)
    history: list[dict[str, str]] = []
    print("tunelab chat — an empty line or Ctrl-D ends it; /reset forgets the conversation")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            break
        if not line:
            break
        if line == "/reset":
            history = []
            continue
        history.append({"role": "user", "content": line})
        prompt = history if task.use_chat else "\n".join(m["content"] for m in history)
        ids = task.prompt_ids(prompt)
        answer = task.generate_for(model, [ids], 1, acc, **_gen_overrides(args))[0]
        history.append({"role": "assistant", "content": answer})
        print(f"model> {answer}")
    return 0


def _cmd_merge(args) -> int:
    from tunelab.api import merge

    path = merge(args.run_dir, args.output, args.overwrite)
    if path.name == "model":
        print(f"{path} already holds the full model (nothing to merge for this method)")
    else:
        task = json.loads((Path(args.run_dir) / "run.json").read_text())["task"]
        auto = "AutoModelForSequenceClassification"
        if task["type"] == "generation":
            auto = "AutoModelForSeq2SeqLM" if task.get("seq2seq") else "AutoModelForCausalLM"
        print(f"merged model written to {path} (loads with {auto})")
    return 0


def _cmd_combine(args) -> int:
    from tunelab.adapters import combine_adapters
    from tunelab.errors import ConfigError

    runs: dict[str, str] = {}
    for item in args.runs:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).name, item
        if name in runs:
            raise ConfigError(f"two runs are named {name!r}; name them: NAME=RUN_DIR")
        runs[name] = path
    weights = None
    if args.weights:
        try:
            values = [float(w) for w in args.weights.split(",")]
        except ValueError:
            raise ConfigError(f"--weights {args.weights!r}: comma-separated numbers") from None
        if len(values) != len(runs):
            raise ConfigError(f"--weights has {len(values)} values for {len(runs)} runs")
        weights = dict(zip(runs, values))
    out = combine_adapters(runs, weights, args.output, args.combination, args.overwrite,
                           args.density)  # fmt: skip
    print(f"combined adapter written to {out} (use it like any run: tunelab predict {out} ...)")
    return 0


def _cmd_compare(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from tunelab.compare import COLUMNS, compare
    from tunelab.errors import ConfigError

    per_method: dict[str, list[str]] = {}
    for item in args.set or []:
        method, sep, override = item.partition(":")
        if not sep or "=" not in override:
            raise ConfigError(f"--set {item!r}: expected METHOD:key=value")
        per_method.setdefault(method.strip(), []).append(override.strip())
    rows = compare(
        args.config,
        [m.strip() for m in args.methods.split(",") if m.strip()],
        args.overrides,
        args.output,
        per_method,
    )
    t = Table(title="methods compared")
    for c in COLUMNS:
        t.add_column(c, justify="left" if c == "method" else "right")
    for r in rows:
        if "error" in r:
            t.add_row(r["method"], f"failed: {r['error']}", *[""] * (len(COLUMNS) - 2))
            continue
        t.add_row(
            r["method"],
            f"{r['lr']:g}",
            f"{r['metric']:.4f}",
            f"{r['trainable_pct']:.3f}",
            f"{r['train_seconds']:.1f}",
            f"{r['examples_per_s']:.1f}",
            f"{r['peak_rss_mb']:.0f}",
            f"{r['saved_mb']:.2f}",
        )
    Console().print(t)
    return 0 if all("error" not in r for r in rows) else 1


def _cmd_models(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from tunelab.models import list_models

    t = Table(title="embedded models")
    for c in ("name", "kind", "installed", "converted cache", "description / install"):
        t.add_column(c)
    for m in list_models():
        t.add_row(
            m["name"],
            m["kind"],
            "yes" if m["installed"] else "no",
            "yes" if m["cached"] else "-",
            m["description"] if m["installed"] else m["install"],
        )
    Console().print(t)
    print("Also accepted: a local transformers folder, a .gguf file, or a hub id (when online).")
    return 0


def _cmd_methods(args) -> int:
    from tunelab.methods import get_method, method_names

    for n in method_names():
        print(f"{n:10s} {get_method(n).description}")
    return 0


def _cmd_config(args) -> int:
    import yaml

    from tunelab.config import load_config

    print(
        yaml.safe_dump(load_config(args.config, args.overrides).to_dict(), sort_keys=False), end=""
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tunelab",
        description="Fine-tune pretrained language models and measure what the adaptation did.",
    )
    from tunelab import __version__

    p.add_argument("--version", action="version", version=f"tunelab {__version__}")
    sub = p.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_ConfigHelpParser
    )
    fmt = argparse.RawDescriptionHelpFormatter

    s = sub.add_parser("demo", help="LoRA-tune the embedded MiniLM on a built-in sentiment set")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.set_defaults(func=_cmd_demo)

    s = sub.add_parser("train", help="fine-tune from a YAML config", formatter_class=fmt)
    s.add_argument("config", help="YAML config file")
    s.add_argument(
        "overrides", nargs="*", metavar="key=value", help="e.g. training.lr=1e-4 method=full"
    )
    s.add_argument(
        "--resume", action="store_true", help="continue from the newest complete checkpoint"
    )
    s.set_defaults(func=_cmd_train)

    s = sub.add_parser(
        "eval",
        help="score a finished run on a split or a labelled file, or a run or model on a suite",
    )
    s.add_argument("run_dir", metavar="TARGET", help="a run directory (or, with --suite, a model)")
    s.add_argument("--suite", help="a suite YAML (see suites/): benchmarks, robustness")
    s.add_argument("--output", help="--suite with a model: where results go")
    g = s.add_mutually_exclusive_group()
    g.add_argument(
        "--split", default="validation", help="train, validation or test (default validation)"
    )
    g.add_argument("--file", help="a labelled data file")
    s.add_argument("--text-column")
    s.add_argument("--text-pair-column")
    s.add_argument("--label-column")
    s.add_argument("--batch-size", type=int)
    s.add_argument("--json", action="store_true", help="print the metrics as JSON")
    s.add_argument(
        "--trust-remote-code", action="store_true", help="allow the base model's own code to run"
    )
    s.set_defaults(func=_cmd_eval)

    s = sub.add_parser("report", help="one self-contained HTML report of finished runs")
    s.add_argument("runs", nargs="+", metavar="RUN_DIR")
    s.add_argument("--output", default="report.html")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=_cmd_report)

    s = sub.add_parser("human", help="human evaluation: export rating sheets, import ratings")
    hs = s.add_subparsers(dest="human_command", required=True)
    h = hs.add_parser("export", help="a rating sheet (1-5 scales) or, for two runs, pairwise A/B")
    h.add_argument("runs", nargs="+", metavar="RUN_DIR", help="one run, or two to compare")
    h.add_argument("--output", required=True, help="sheet path without suffix (.csv/.jsonl)")
    h.add_argument("--n", type=int, default=50, help="items (default 50)")
    h.add_argument("--split", default="validation", help="whose saved predictions")
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--overwrite", action="store_true")
    h.set_defaults(func=_cmd_human_export)
    h = hs.add_parser("import", help="aggregate filled sheets: means, CIs, win rates, agreement")
    h.add_argument("key", help="the .key.json written by export")
    h.add_argument("sheets", nargs="+", help="filled sheets, one per rater (CSV or JSONL)")
    h.add_argument("--json", action="store_true")
    h.set_defaults(func=_cmd_human_import)

    s = sub.add_parser("predict", help="labels with probabilities from a finished run")
    s.add_argument("run_dir")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--text", action="append", help="a text to classify (repeatable)")
    g.add_argument("--file", help="a data file with the run's text column")
    s.add_argument("--text-pair", action="append", help="second text, one per --text")
    s.add_argument("--output", help="write predictions as JSONL here")
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--json", action="store_true", help="print one JSON object per line")
    s.add_argument(
        "--trust-remote-code", action="store_true", help="allow the base model's own code to run"
    )
    s.set_defaults(func=_cmd_predict)

    def gen_options(s):
        s.add_argument("--max-new-tokens", type=int)
        s.add_argument("--num-beams", type=int, help="beam search width (1 = greedy)")
        s.add_argument("--sample", action="store_true", help="sample instead of greedy/beam")
        s.add_argument("--temperature", type=float)
        s.add_argument("--top-p", type=float)
        s.add_argument(
            "--trust-remote-code", action="store_true", help="allow the model's own code to run"
        )

    s = sub.add_parser("generate", help="generate text with a finished run or any model")
    s.add_argument("target", help="a generation run directory, or a model name / path / hub id")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    g.add_argument("--file", help="a data file of prompts")
    s.add_argument("--column", default="prompt", help="the prompt column of --file")
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--output", help="write prompt/generation pairs as JSONL here")
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--json", action="store_true", help="print one JSON object per line")
    gen_options(s)
    s.set_defaults(func=_cmd_generate)

    s = sub.add_parser("chat", help="talk to a finished run or any model (uses its chat template)")
    s.add_argument("target", help="a generation run directory, or a model name / path / hub id")
    gen_options(s)
    s.set_defaults(func=_cmd_chat)

    s = sub.add_parser("merge", help="fold a LoRA/DoRA/IA3 adapter into its base model")
    s.add_argument("run_dir")
    s.add_argument("--output", help="target folder (default RUN_DIR/merged)")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=_cmd_merge)

    s = sub.add_parser(
        "combine", help="combine the LoRA adapters of several runs by weighted sum (a new run)"
    )
    s.add_argument("runs", nargs="+", metavar="[NAME=]RUN_DIR")
    s.add_argument("--weights", help="comma-separated, one per run (default: equal)")
    s.add_argument(
        "--combination",
        default="cat",
        help="cat (exact weighted sum of updates, default), linear, ties, dare_linear, svd",
    )
    s.add_argument("--density", type=float, default=0.5,
                   help="ties/dare: share of each update kept (default 0.5)")  # fmt: skip
    s.add_argument("--output", required=True, help="the new run directory")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=_cmd_combine)

    s = sub.add_parser("compare", help="train several methods on the same data and budget")
    s.add_argument("config")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.add_argument(
        "--methods",
        required=True,
        help="comma-separated, e.g. full,lora,adapter,prefix; METHOD@LR runs a method at its own "
        "learning rate (repeat a method at several rates to find its best), e.g. prompt@3e-1",
    )
    s.add_argument(
        "--set",
        action="append",
        metavar="METHOD:key=value",
        help="an override for one method's runs only, e.g. prefix:prefix.projection=true",
    )
    s.add_argument("--output", help="folder for the runs and compare.json/.csv/.png")
    s.set_defaults(func=_cmd_compare)

    s = sub.add_parser("models", help="list embedded and installed models")
    s.set_defaults(func=_cmd_models)
    s = sub.add_parser("methods", help="list training methods")
    s.set_defaults(func=_cmd_methods)
    s = sub.add_parser("config", help="print the resolved config (defaults filled in)")
    s.add_argument("config", nargs="?")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.set_defaults(func=_cmd_config)
    return p


class _ConfigHelpParser(argparse.ArgumentParser):
    """`tunelab train --help` lists every config key (built only when help is printed)."""

    def format_help(self) -> str:
        text = super().format_help()
        return text + "\n" + _overrides_help() + "\n" if self.prog.endswith(" train") else text


def main(argv: list[str] | None = None) -> int:
    from tunelab.errors import TunelabError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `key=value` overrides may also follow the options (`tunelab compare CFG --methods ...
    # training.seed=1`): argparse stops filling a positional list once an option comes between.
    if (
        extra
        and hasattr(args, "overrides")
        and all("=" in x and not x.startswith("-") for x in extra)
    ):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except TunelabError as e:
        print(f"tunelab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tunelab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
