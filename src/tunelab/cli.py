"""The `tunelab` command: argparse and a map from subcommands to library functions (each has\nits Python twin in :mod:`tunelab.api`)."""

from __future__ import annotations

import argparse
import json
import sys


def _overrides_help() -> str:
    from tunelab.config import config_help

    return "config keys (set in YAML or as key=value):\n" + config_help()


def _cmd_demo(args) -> int:
    from tunelab.workflows.demo import run_demo

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
    from tunelab.workflows.train import train

    overrides = list(args.overrides)
    if args.resume:
        overrides.append("resume=true")
    res = train(args.config, overrides)
    print(f"run directory: {res.run_dir}")
    return 0


def _cmd_report(args) -> int:
    from tunelab.reporting.report import build_report

    out = build_report(args.runs, args.output, overwrite=args.overwrite, human=args.human or [])
    print(f"report: {out}")
    return 0


def _cmd_human_export(args) -> int:
    from tunelab.evaluation.human import export_sheet

    criteria = tuple(c.strip() for c in args.criteria.split(",")) if args.criteria else None
    paths = export_sheet(
        args.runs,
        args.output,
        n=args.n,
        split=args.split,
        seed=args.seed,
        overwrite=args.overwrite,
        **({"criteria": criteria} if criteria else {}),
    )
    print(
        f"rating sheet: {paths['csv']} and {paths['jsonl']}; key (keep from raters): {paths['key']}"
    )
    return 0


def _cmd_human_import(args) -> int:
    from tunelab.evaluation.human import import_ratings, write_preferences

    rep = import_ratings(args.sheet, args.sheets)
    if args.preferences:
        path, counts = write_preferences(
            args.sheet,
            args.preferences,
            args.sheets,
            min_agreement=args.min_agreement,
            overwrite=args.overwrite,
        )
        rep["preferences"] = {"path": str(path), **counts}
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    from rich.console import Console

    from tunelab.reporting.tables import print_human

    print_human(Console(), rep)
    if args.preferences:
        c = rep["preferences"]
        dropped = ", ".join(
            f"{k.replace('_', ' ')} {c[k]}"
            for k in ("ties", "no_majority", "below_agreement", "unjudged")
            if c.get(k)
        )
        print(f"preference pairs: {c['pairs']} of {c['items']} items written to {c['path']}")
        if dropped:
            print(f"  dropped: {dropped}")
    return 0


def _cmd_human_serve(args) -> int:
    from tunelab.workflows.human_app import parse_raters, serve_ratings

    def ready(links, session, port) -> None:
        key = session.key
        print(
            f"rating app: {session.paths['key'].name} ({key['mode']}, {len(key['items'])} items)"
            f" on port {port}; answers go to {session.paths['db']}"
        )
        width = max(len(n) for n in links)
        for name, url in links.items():
            print(f"  {name:<{width}}  {url}")
        print("each link is private to its rater; Ctrl-C stops the server", flush=True)

    raters = parse_raters(args.raters) if args.raters else None
    serve_ratings(args.sheet, raters=raters, host=args.host, port=args.port, on_ready=ready)
    return 0


def _cmd_eval(args) -> int:
    from rich.console import Console

    if args.suite:
        from tunelab.workflows.suite import dumps, run_suite_to_file

        res, path = run_suite_to_file(
            args.run_dir,
            args.suite,
            output=args.output,
            batch_size=args.batch_size,
            trust_remote_code=args.trust_remote_code,
            console=None if args.json else Console(),
        )
        print(dumps({**res, "_written": str(path)}) if args.json else f"written: {path}")
        return 0
    from tunelab.reporting.tables import print_classification_eval
    from tunelab.workflows.runs import evaluate_to_file

    cols = {
        k: v
        for k, v in (
            ("text_column", args.text_column),
            ("label_column", args.label_column),
            ("text_pair_column", args.text_pair_column),
        )
        if v
    }
    m, path = evaluate_to_file(
        args.run_dir,
        split=args.split,
        file=args.file,
        columns=cols,
        batch_size=args.batch_size,
        trust_remote_code=args.trust_remote_code,
    )
    if args.json:
        print(json.dumps({**m, "_written": str(path)}, indent=2))
        return 0
    print_classification_eval(Console(), f"{args.file or args.split} · n={m['n']}", m, str(path))
    return 0


def _write_rows(path: str, rows: list[dict], what: str) -> None:
    from tunelab.utils.io import atomic_write_jsonl

    atomic_write_jsonl(path, rows)
    print(f"{len(rows)} {what} written to {path}")


def _cmd_predict(args) -> int:
    from tunelab.workflows.generate import output_exists
    from tunelab.workflows.runs import predict

    output_exists(args.output, args.overwrite)
    rows = predict(
        args.run_dir,
        texts=args.text,
        file=args.file,
        text_pairs=args.text_pair,
        trust_remote_code=args.trust_remote_code,
    )
    if args.output:
        _write_rows(args.output, rows, "predictions")
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
    from tunelab.workflows.generate import generate, output_exists, read_prompts

    output_exists(args.output, args.overwrite)
    prompts = read_prompts(args.file, args.column) if args.file else list(args.prompt or [])
    outs = generate(
        args.target,
        prompts,
        batch_size=args.batch_size,
        trust_remote_code=args.trust_remote_code,
        **_gen_overrides(args),
    )
    rows = [{"prompt": p, "generation": o} for p, o in zip(prompts, outs)]
    if args.output:
        _write_rows(args.output, rows, "generations")
        return 0
    for r in rows:
        print(json.dumps(r, ensure_ascii=False) if args.json else r["generation"])
    return 0


def _cmd_chat(args) -> int:
    from tunelab.workflows.generate import chat

    session = chat(args.target, args.trust_remote_code, **_gen_overrides(args))
    print("tunelab chat — an empty line or Ctrl-D ends it; /reset forgets the conversation")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            break
        if not line:
            break
        if line == "/reset":
            session.reset()
            continue
        print(f"model> {session.reply(line)}")
    return 0


def _cmd_merge(args) -> int:
    from tunelab.workflows.runs import merge, merged_auto_class

    path = merge(args.run_dir, args.output, args.overwrite)
    from tunelab import rundir

    if path.name == rundir.MODEL:
        print(f"{path} already holds the full model (nothing to merge for this method)")
    else:
        print(f"merged model written to {path} (loads with {merged_auto_class(args.run_dir)})")
    return 0


def _cmd_combine(args) -> int:
    from tunelab.workflows.adapters import combine_adapters, named_runs, parse_weights

    runs = named_runs(args.runs)
    out = combine_adapters(
        runs,
        parse_weights(args.weights, runs),
        args.output,
        args.combination,
        args.overwrite,
        args.density,
    )
    print(f"combined adapter written to {out} (use it like any run: tunelab predict {out} ...)")
    return 0


def _cmd_compare(args) -> int:
    from rich.console import Console

    from tunelab.reporting.tables import print_compare
    from tunelab.workflows.compare import COLUMNS, compare, per_method_overrides

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    rows = compare(
        args.config,
        methods,
        args.overrides,
        args.output,
        per_method_overrides(args.set),
        resume=args.resume,
    )
    print_compare(Console(), rows, COLUMNS)
    return 0 if all("error" not in r for r in rows) else 1


def _cmd_models(args) -> int:
    from rich.console import Console

    from tunelab.models import list_models
    from tunelab.reporting.tables import print_models

    print_models(Console(), list_models())
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
    from tunelab.version import __version__

    p.add_argument("--version", action="version", version=f"tunelab {__version__}")
    sub = p.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_ConfigHelpParser
    )
    _add_run_commands(sub)
    _add_use_commands(sub)
    _add_tool_commands(sub)
    return p


def _add_run_commands(sub) -> None:
    """demo, train, eval, report, human."""
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
    s.add_argument(
        "--human",
        action="append",
        metavar="SHEET",
        help="a rating sheet of these runs' outputs: human scores vs metrics (repeatable)",
    )
    s.set_defaults(func=_cmd_report)

    s = sub.add_parser(
        "human", help="human evaluation: rating sheets, the rating app, importing ratings"
    )
    hs = s.add_subparsers(dest="human_command", required=True)
    h = hs.add_parser("export", help="a rating sheet (1-5 scales) or, for two runs, pairwise A/B")
    h.add_argument("runs", nargs="+", metavar="RUN_DIR", help="one run, or two to compare")
    h.add_argument("--output", required=True, help="sheet path without suffix (.csv/.jsonl)")
    h.add_argument("--n", type=int, default=50, help="items (default 50)")
    h.add_argument("--split", default="validation", help="whose saved predictions")
    h.add_argument("--seed", type=int, default=0)
    h.add_argument(
        "--criteria", help="1-5 scales, comma-separated (default fluency,coherence,relevance)"
    )
    h.add_argument("--overwrite", action="store_true")
    h.set_defaults(func=_cmd_human_export)
    h = hs.add_parser(
        "serve", help="the rating app: one private link per rater, answers kept in SQLite"
    )
    h.add_argument("sheet", metavar="SHEET", help="export's --output path, a sheet file or folder")
    h.add_argument(
        "--raters", help="names (alice,bob) or a count (3); default: the raters already known"
    )
    h.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1 only)")
    h.add_argument("--port", type=int, default=8080, help="0 takes a free port (default 8080)")
    h.set_defaults(func=_cmd_human_serve)
    h = hs.add_parser("import", help="aggregate ratings: means, CIs, win rates, agreement")
    h.add_argument(
        "sheet",
        metavar="SHEET",
        help="the .key.json, export's --output path or its folder (reads its rating database)",
    )
    h.add_argument("sheets", nargs="*", help="filled sheets, one per rater (CSV or JSONL)")
    h.add_argument("--json", action="store_true")
    h.add_argument(
        "--preferences", metavar="PAIRS.jsonl", help="write A/B judgements as preference pairs"
    )
    h.add_argument(
        "--min-agreement",
        type=float,
        default=0.0,
        help="--preferences: least share of an item's judgements on the winner (default 0)",
    )
    h.add_argument("--overwrite", action="store_true", help="replace an existing PAIRS.jsonl")
    h.set_defaults(func=_cmd_human_import)


def _gen_options(s) -> None:
    s.add_argument("--max-new-tokens", type=int)
    s.add_argument("--num-beams", type=int, help="beam search width (1 = greedy)")
    s.add_argument("--sample", action="store_true", help="sample instead of greedy/beam")
    s.add_argument("--temperature", type=float)
    s.add_argument("--top-p", type=float)
    s.add_argument(
        "--trust-remote-code", action="store_true", help="allow the model's own code to run"
    )


def _add_use_commands(sub) -> None:
    """predict, generate, chat, merge, combine."""
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
    _gen_options(s)
    s.set_defaults(func=_cmd_generate)

    s = sub.add_parser("chat", help="talk to a finished run or any model (uses its chat template)")
    s.add_argument("target", help="a generation run directory, or a model name / path / hub id")
    _gen_options(s)
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
    s.add_argument(
        "--density",
        type=float,
        default=0.5,
        help="ties/dare: share of each update kept (default 0.5)",
    )
    s.add_argument("--output", required=True, help="the new run directory")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=_cmd_combine)


def _add_tool_commands(sub) -> None:
    """compare, models, methods, config."""
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
    s.add_argument(
        "--resume",
        action="store_true",
        help="keep the finished runs in --output and continue an interrupted one",
    )
    s.set_defaults(func=_cmd_compare)

    s = sub.add_parser("models", help="list embedded and installed models")
    s.set_defaults(func=_cmd_models)
    s = sub.add_parser("methods", help="list training methods")
    s.set_defaults(func=_cmd_methods)
    s = sub.add_parser("config", help="print the resolved config (defaults filled in)")
    s.add_argument("config", nargs="?")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.set_defaults(func=_cmd_config)


class _ConfigHelpParser(argparse.ArgumentParser):
    """`tunelab train --help` lists every config key (built only when help is printed)."""

    def format_help(self) -> str:
        text = super().format_help()
        return text + "\n" + _overrides_help() + "\n" if self.prog.endswith(" train") else text


def main(argv: list[str] | None = None) -> int:
    from tunelab.errors import RunInterrupted, TunelabError

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
    except RunInterrupted as e:
        print(f"tunelab: {e}", file=sys.stderr)
        return e.exit_code
    except TunelabError as e:
        print(f"tunelab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tunelab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
