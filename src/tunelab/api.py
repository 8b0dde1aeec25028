"""The Python API: one import for everything the CLI can do.

A thin facade over the layers (see ARCHITECTURE.md): nothing is defined here, and nothing under
``src/`` imports this module. Every CLI command has its Python twin among these names.
"""

from __future__ import annotations

from tunelab.evaluation.human import (
    export_sheet,
    import_ratings,
    preference_pairs,
    write_preferences,
)
from tunelab.evaluation.human_metrics import human_vs_metrics
from tunelab.evaluation.metrics import CLASSIFICATION_SHOWN as SHOWN
from tunelab.evaluation.metrics import GENERATION_SHOWN as SHOWN_GENERATION
from tunelab.tasks import build_task, load_splits
from tunelab.training.precision import choose_precision, make_accelerator
from tunelab.training.probes import (
    cached_probe_scores,
    load_probes,
    probe_cache_key,
    probe_deltas,
    score_probes,
)
from tunelab.training.resume import RESUME_FIXED, fingerprint_model, fingerprint_split
from tunelab.workflows.adapters import (
    AdapterSet,
    combine_adapters,
    load_adapters,
    named_runs,
    parse_weights,
)
from tunelab.workflows.benchmark import run_benchmark
from tunelab.workflows.compare import compare, per_method_overrides
from tunelab.workflows.demo import run_demo
from tunelab.workflows.export import export_run
from tunelab.workflows.generate import (
    Chat,
    GenerationTarget,
    chat,
    generate,
    load_generation_target,
    read_prompts,
)
from tunelab.workflows.human_app import (
    RatingSession,
    create_rating_app,
    open_rating_session,
    parse_raters,
    serve_ratings,
)
from tunelab.workflows.preference_data import crows_pairs_preferences
from tunelab.workflows.runs import (
    LoadedRun,
    evaluate,
    load_run,
    merge,
    open_run,
    predict,
)
from tunelab.workflows.serve import serve
from tunelab.workflows.single import RunResult, train_single
from tunelab.workflows.suite import run_suite
from tunelab.workflows.train import (
    earlier_stage_retention,
    train,
    train_per_task_adapters,
    train_stages,
)
from tunelab.workflows.tune import TuneResult, tune

__all__ = [
    "RESUME_FIXED",
    "SHOWN",
    "SHOWN_GENERATION",
    "AdapterSet",
    "Chat",
    "GenerationTarget",
    "LoadedRun",
    "RatingSession",
    "RunResult",
    "TuneResult",
    "build_task",
    "cached_probe_scores",
    "chat",
    "choose_precision",
    "combine_adapters",
    "compare",
    "create_rating_app",
    "crows_pairs_preferences",
    "earlier_stage_retention",
    "evaluate",
    "export_run",
    "export_sheet",
    "fingerprint_model",
    "fingerprint_split",
    "generate",
    "human_vs_metrics",
    "import_ratings",
    "load_adapters",
    "load_generation_target",
    "load_probes",
    "load_run",
    "load_splits",
    "make_accelerator",
    "merge",
    "named_runs",
    "open_rating_session",
    "open_run",
    "parse_raters",
    "parse_weights",
    "per_method_overrides",
    "predict",
    "preference_pairs",
    "probe_cache_key",
    "probe_deltas",
    "read_prompts",
    "run_benchmark",
    "run_demo",
    "run_suite",
    "score_probes",
    "serve",
    "serve_ratings",
    "train",
    "train_per_task_adapters",
    "train_single",
    "train_stages",
    "tune",
    "write_preferences",
]
