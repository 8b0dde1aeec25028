"""`tunelab benchmark`: the command's function (its parser is in ``cli/__init__.py``)."""

from __future__ import annotations

from pathlib import Path


def cmd_benchmark(args) -> int:
    from rich.console import Console

    from tunelab.reporting.benchmark import table_rows
    from tunelab.reporting.tables import print_benchmark
    from tunelab.workflows.benchmark import run_benchmark

    config, overrides = args.config, list(args.overrides)
    if config and "=" in config and not Path(config).is_file():  # only overrides were given
        config, overrides = None, [config, *overrides]
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    console = Console(stderr=True)
    state = run_benchmark(
        args.benchmark,
        config,
        overrides,
        tasks=tasks,
        output=args.output,
        data_dir=args.data,
        recipes=args.recipes,
        console=console,
    )
    print_benchmark(Console(), state, table_rows(state))
    out = args.output or f"benchmarks-{args.benchmark}"
    print(f"results: {out}/benchmark.json, benchmark.csv, benchmark.png")
    return 0
