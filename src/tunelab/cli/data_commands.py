"""``tunelab data ...``: data preparation commands (their parser and their functions)."""

from __future__ import annotations

import json


def add_data_commands(sub) -> None:
    """data crows-pairs."""
    s = sub.add_parser("data", help="prepare data: preference pairs from data sets")
    ds = s.add_subparsers(dest="data_command", required=True)
    d = ds.add_parser(
        "crows-pairs",
        help="preference pairs from a seeded half of CrowS-Pairs (less stereotypical chosen)",
    )
    d.add_argument("data", metavar="CSV", help="crows_pairs_anonymized.csv")
    d.add_argument("--output", required=True, metavar="PAIRS.jsonl")
    d.add_argument(
        "--half",
        choices=["train", "test"],
        default="train",
        help="which seeded half (default train); a suite task with `half: test` scores the other",
    )
    d.add_argument("--seed", type=int, default=0, help="seed of the halves (suite: half_seed)")
    d.add_argument(
        "--prompt",
        choices=["shared", "empty"],
        default="shared",
        help="shared: the words both sentences start with become the prompt (default); "
        "empty: whole sentences, empty prompts",
    )
    d.add_argument("--overwrite", action="store_true", help="replace an existing PAIRS.jsonl")
    d.add_argument("--json", action="store_true", help="print the counts as JSON")
    d.set_defaults(func=cmd_data_crows_pairs)


def cmd_data_crows_pairs(args) -> int:
    from tunelab.workflows.preference_data import crows_pairs_preferences

    path, counts = crows_pairs_preferences(
        args.data, args.output, args.half, args.seed, args.prompt, args.overwrite
    )
    if args.json:
        print(json.dumps({"path": str(path), **counts}, indent=2))
        return 0
    kinds = ", ".join(f"{k} {v}" for k, v in counts["by_bias_type"].items())
    print(
        f"{counts['pairs']} preference pairs ({counts['half']} half of {counts['of']} rows, "
        f"seed {counts['seed']}; {counts['with_prompt']} with a shared-prefix prompt) "
        f"written to {path}"
    )
    print(f"  by bias type: {kinds}")
    return 0
