"""The `tunelab` commands: each parses nothing, calls one library function and prints."""

from __future__ import annotations

import json


def cmd_demo(args) -> int:
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


def cmd_train(args) -> int:
    from tunelab.workflows.train import train

    overrides = list(args.overrides)
    if args.resume:
        overrides.append("resume=true")
    res = train(args.config, overrides)
    print(f"run directory: {res.run_dir}")
    return 0


def cmd_report(args) -> int:
    from tunelab.reporting.report import build_report

    out = build_report(args.runs, args.output, overwrite=args.overwrite, human=args.human or [])
    print(f"report: {out}")
    return 0


def cmd_human_export(args) -> int:
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


def cmd_human_import(args) -> int:
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


def cmd_human_serve(args) -> int:
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


def cmd_eval(args) -> int:
    from rich.console import Console

    if args.lm_eval:
        from tunelab.reporting.tables import print_suite
        from tunelab.workflows.lm_eval_backend import run_lm_eval

        tasks = [t.strip() for t in args.lm_eval.split(",") if t.strip()]
        res, path = run_lm_eval(
            args.run_dir,
            tasks,
            args.include_path,
            args.limit,
            args.num_fewshot,
            args.batch_size or 8,
            args.output,
            trust_remote_code=args.trust_remote_code,
            precision=args.precision,
        )
        if args.json:
            print(json.dumps({**res, "_written": str(path)}, indent=2, default=str))
        else:
            print_suite(Console(), res)
            print(f"written: {path}")
        return 0
    if args.suite:
        from tunelab.workflows.suite import dumps, run_suite_to_file

        res, path = run_suite_to_file(
            args.run_dir,
            args.suite,
            output=args.output,
            batch_size=args.batch_size,
            trust_remote_code=args.trust_remote_code,
            console=None if args.json else Console(),
            precision=args.precision,
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
    if "per_class" not in m:  # a generation or preference run: its scores as they are
        from tunelab.evaluation.metrics import scalar_metrics

        print(json.dumps(scalar_metrics(m), indent=2) + f"\nwritten: {path}")
        return 0
    print_classification_eval(Console(), f"{args.file or args.split} · n={m['n']}", m, str(path))
    return 0


def write_rows(path: str, rows: list[dict], what: str) -> None:
    from tunelab.utils.io import atomic_write_jsonl

    atomic_write_jsonl(path, rows)
    print(f"{len(rows)} {what} written to {path}")


def cmd_predict(args) -> int:
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
        write_rows(args.output, rows, "predictions")
        return 0
    for r in rows:
        if args.json or not isinstance(r.get("probabilities"), dict) or "label" not in r:
            print(json.dumps(r, ensure_ascii=False))  # regression, tags, entities, answers
        else:
            probs = "  ".join(f"{k}={v:.3f}" for k, v in r["probabilities"].items())
            print(f"{r['label']}\t{probs}\t{r['text']}")
    return 0


def gen_overrides(args) -> dict:
    return {
        "max_new_tokens": args.max_new_tokens,
        "num_beams": args.num_beams,
        "do_sample": True if args.sample else None,
        "temperature": args.temperature,
        "top_p": args.top_p,
    }


def cmd_generate(args) -> int:
    from tunelab.workflows.generate import generate, output_exists, read_prompts

    output_exists(args.output, args.overwrite)
    prompts = read_prompts(args.file, args.column) if args.file else list(args.prompt or [])
    outs = generate(
        args.target,
        prompts,
        batch_size=args.batch_size,
        trust_remote_code=args.trust_remote_code,
        **gen_overrides(args),
    )
    rows = [{"prompt": p, "generation": o} for p, o in zip(prompts, outs)]
    if args.output:
        write_rows(args.output, rows, "generations")
        return 0
    for r in rows:
        print(json.dumps(r, ensure_ascii=False) if args.json else r["generation"])
    return 0


def cmd_chat(args) -> int:
    from tunelab.workflows.generate import chat

    session = chat(args.target, args.trust_remote_code, **gen_overrides(args))
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


def cmd_merge(args) -> int:
    from tunelab.workflows.runs import merge, merged_auto_class

    path = merge(args.run_dir, args.output, args.overwrite)
    from tunelab import rundir

    if path.name == rundir.MODEL:
        print(f"{path} already holds the full model (nothing to merge for this method)")
    else:
        print(f"merged model written to {path} (loads with {merged_auto_class(args.run_dir)})")
    return 0


def cmd_serve(args) -> int:
    from tunelab.workflows.serve import serve

    def ready(url: str, names: list[str]) -> None:
        print(f"tunelab serve: listening on {url} (models: {', '.join(names)})", flush=True)

    opts = {k: v for k, v in vars(args).items() if k not in ("command", "func", "targets")}
    return serve(args.targets, ready=ready, **opts)


def cmd_export(args) -> int:
    from tunelab.workflows.export import base_model_of, export_run

    path = export_run(args.run_dir, args.output, args.format, args.overwrite)
    base = base_model_of(path)
    print(f"exported {args.run_dir} to {path}" + (f" (base model: {base})" if base else ""))
    return 0


def cmd_combine(args) -> int:
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


def cmd_compare(args) -> int:
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


def cmd_models(args) -> int:
    from rich.console import Console

    from tunelab.models import list_models
    from tunelab.reporting.tables import print_models

    print_models(Console(), list_models())
    print("Also accepted: a local transformers folder, a .gguf file, or a hub id (when online).")
    return 0


def cmd_methods(args) -> int:
    from tunelab.methods import get_method, method_names

    for n in method_names():
        print(f"{n:10s} {get_method(n).description}")
    return 0


def cmd_config(args) -> int:
    import yaml

    from tunelab.config import load_config

    print(
        yaml.safe_dump(load_config(args.config, args.overrides).to_dict(), sort_keys=False), end=""
    )
    return 0
