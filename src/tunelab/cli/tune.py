"""`tunelab tune`: its parser and command (kept apart from ``commands.py``, which is long)."""

from __future__ import annotations


def add_tune_command(sub) -> None:
    s = sub.add_parser(
        "tune",
        help="hyperparameter search (Optuna) over the config's `search:` space",
    )
    s.add_argument("config", help="YAML config file with a `search:` section")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.add_argument("--trials", type=int, default=20, help="trials in all (default 20)")
    s.add_argument(
        "--timeout", type=float, help="seconds after which no new trial starts (a running one ends)"
    )
    s.add_argument("--study", help="study name (default: output.name, else `study`)")
    s.add_argument(
        "--storage",
        help="an Optuna storage URL (postgresql://..., mysql://...): several `tunelab tune` "
        "processes given one URL and --study work on one study; default: "
        "a SQLite file in the study folder",
    )
    s.add_argument("--output", help="the study folder (default: output.dir/STUDY)")
    s.set_defaults(func=cmd_tune)


def cmd_tune(args) -> int:
    from tunelab.reporting.tables import print_study
    from tunelab.workflows.single import console_for
    from tunelab.workflows.tune import tune

    res = tune(
        args.config,
        list(args.overrides),
        trials=args.trials,
        timeout=args.timeout,
        study=args.study,
        storage=args.storage,
        output=args.output,
    )
    print_study(console_for(), res.trials, [t["number"] for t in res.best], res.best_test)
    print(f"study folder: {res.study_dir}")
    for key in ("study", "best"):
        if key in res.files:
            print(f"{key}: {res.files[key]}")
    return 0
