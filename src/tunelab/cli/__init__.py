"""The `tunelab` command: argparse and a map from subcommands to library functions (each has\nits Python twin in :mod:`tunelab.api`)."""

from __future__ import annotations

import argparse
import sys

from tunelab.cli import commands
from tunelab.cli.data_commands import add_data_commands


def _overrides_help() -> str:
    from tunelab.config import config_help

    return "config keys (set in YAML or as key=value):\n" + config_help()


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
    add_data_commands(sub)
    return p


def _add_run_commands(sub) -> None:
    """demo, train, eval, report, human."""
    fmt = argparse.RawDescriptionHelpFormatter

    s = sub.add_parser("demo", help="LoRA-tune the embedded MiniLM on a built-in sentiment set")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.set_defaults(func=commands.cmd_demo)

    s = sub.add_parser("train", help="fine-tune from a YAML config", formatter_class=fmt)
    s.add_argument("config", help="YAML config file")
    s.add_argument(
        "overrides", nargs="*", metavar="key=value", help="e.g. training.lr=1e-4 method=full"
    )
    s.add_argument(
        "--resume", action="store_true", help="continue from the newest complete checkpoint"
    )
    s.set_defaults(func=commands.cmd_train)

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
    s.add_argument(
        "--lm-eval",
        metavar="TASKS",
        help="run lm-evaluation-harness's own tasks (comma-separated) on TARGET",
    )
    s.add_argument("--include-path", help="--lm-eval: a folder of task YAMLs (see lm_eval_tasks/)")
    s.add_argument("--limit", type=int, help="--lm-eval: the first N documents of each task")
    s.add_argument("--num-fewshot", type=int, help="--lm-eval: few-shot examples per prompt")
    s.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp16", "fp32"],
        help="--suite/--lm-eval: the precision to score in (default: the run's, or auto)",
    )
    s.set_defaults(func=commands.cmd_eval)

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
    s.set_defaults(func=commands.cmd_report)

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
    h.set_defaults(func=commands.cmd_human_export)
    h = hs.add_parser(
        "serve", help="the rating app: one private link per rater, answers kept in SQLite"
    )
    h.add_argument("sheet", metavar="SHEET", help="export's --output path, a sheet file or folder")
    h.add_argument(
        "--raters", help="names (alice,bob) or a count (3); default: the raters already known"
    )
    h.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1 only)")
    h.add_argument("--port", type=int, default=8080, help="0 takes a free port (default 8080)")
    h.set_defaults(func=commands.cmd_human_serve)
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
    h.set_defaults(func=commands.cmd_human_import)


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
    """predict, generate, chat, merge, combine, serve, export."""
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
    s.set_defaults(func=commands.cmd_predict)

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
    s.set_defaults(func=commands.cmd_generate)

    s = sub.add_parser("chat", help="talk to a finished run or any model (uses its chat template)")
    s.add_argument("target", help="a generation run directory, or a model name / path / hub id")
    _gen_options(s)
    s.set_defaults(func=commands.cmd_chat)

    s = sub.add_parser("merge", help="fold a LoRA/DoRA/IA3 adapter into its base model")
    s.add_argument("run_dir")
    s.add_argument("--output", help="target folder (default RUN_DIR/merged)")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=commands.cmd_merge)

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
    s.set_defaults(func=commands.cmd_combine)

    s = sub.add_parser("serve", help="an OpenAI-compatible HTTP server for runs and models")
    s.add_argument("targets", nargs="+", metavar="TARGET", help="RUN_DIR, NAME=RUN_DIR or a model")
    s.add_argument("--host", default="127.0.0.1", help="listen address (default loopback only)")
    s.add_argument("--port", type=int, default=8000, help="0: a free port")
    s.add_argument("--api-key", help="require Authorization: Bearer KEY (or $TUNELAB_API_KEY)")
    for flag, default, what in (
        ("--max-batch-size", 16, "generations in one batch"),
        ("--max-classify-batch", 64, "classification inputs in one forward pass"),
        ("--batch-wait-ms", 10.0, "a batch waits while requests come this close together"),
        ("--max-tokens", 1024, "the most tokens one request may generate"),
        ("--max-pending", 256, "requests queued or running at once (more get 429)"),
        ("--max-body-bytes", 1 << 20, "the largest request body"),
        ("--drain-timeout", 30.0, "seconds SIGTERM waits for requests in flight"),
    ):
        s.add_argument(flag, type=type(default), default=default, help=f"{what} ({default})")
    s.add_argument("--precision", help="fp32, bf16 or auto for every target (default: its own)")
    s.add_argument("--trust-remote-code", action="store_true", help="allow models' own code")
    s.set_defaults(func=commands.cmd_serve)

    s = sub.add_parser("export", help="a run as a plain transformers or PEFT adapter folder")
    s.add_argument("run_dir")
    s.add_argument("--format", default="merged", help="merged (default) or adapter")
    s.add_argument("--output", required=True, help="the folder to write")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=commands.cmd_export)


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
    s.set_defaults(func=commands.cmd_compare)

    from tunelab.cli import benchmark as bench_cli

    s = sub.add_parser(
        "benchmark", help="GLUE / SuperGLUE: fine-tune and score one model per task, the table"
    )
    s.add_argument("benchmark", choices=["glue", "superglue"])
    s.add_argument("config", nargs="?", help="base config (model, method, training)")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.add_argument("--tasks", help="comma-separated task names, e.g. cola,rte (default: all)")
    s.add_argument("--output", help="folder for the runs and benchmark.json/.csv/.png")
    s.add_argument("--data", help="data folder (default: ../shared/data/BENCHMARK)")
    s.add_argument("--recipes", help="per-task recipe folder (default: configs/BENCHMARK)")
    s.set_defaults(func=bench_cli.cmd_benchmark)

    s = sub.add_parser("models", help="list embedded and installed models")
    s.set_defaults(func=commands.cmd_models)
    s = sub.add_parser("methods", help="list training methods")
    s.set_defaults(func=commands.cmd_methods)
    s = sub.add_parser("config", help="print the resolved config (defaults filled in)")
    s.add_argument("config", nargs="?")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.set_defaults(func=commands.cmd_config)

    from tunelab.cli.tune import add_tune_command

    add_tune_command(sub)


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
