"""lm-evaluation-harness as a backend: its own task definitions, scored on a model tunelab loaded.

``tunelab eval TARGET --lm-eval TASKS`` hands lm-eval the model object of a finished run (a full
model, a PEFT adapter, or tunelab's own methods, which lm-eval cannot load by itself) or of a
model name, wrapped in lm-eval's ``HFLM``. Results land in the run's ``eval/`` folder in the
suite format, so ``tunelab report`` shows them next to tunelab's own suites."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tunelab import rundir
from tunelab.errors import ConfigError
from tunelab.utils.io import atomic_write_json
from tunelab.utils.memory import retain_freed_memory
from tunelab.workflows.generate import load_generation_target


def _positional(model):
    """The model as HFLM calls it (``model(input_ids)``, ``.device``, ``.config``): tunelab's
    own prefix/prompt wrappers take keyword inputs only."""
    import torch

    class Positional(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        @property
        def config(self):
            return self.inner.config

        @property
        def device(self):
            return next(self.inner.parameters()).device

        def forward(self, input_ids, attention_mask=None, **kwargs):
            if attention_mask is not None:
                kwargs["attention_mask"] = attention_mask
            return self.inner(input_ids=input_ids, **kwargs)

        def generate(self, *args, **kwargs):
            return self.inner.generate(*args, **kwargs)

        def tie_weights(self):
            return None

    return Positional(model)


def _timed(hflm_class):
    """``HFLM`` that adds up the seconds its request methods take (``request_seconds``): lm-eval's
    scoring alone, without building its tasks or computing its metrics."""

    class TimedHFLM(hflm_class):
        request_seconds = 0.0

        def _timed_call(self, name, requests, *args, **kwargs):
            started = time.perf_counter()
            try:
                return getattr(super(), name)(requests, *args, **kwargs)
            finally:
                self.request_seconds += time.perf_counter() - started

        def loglikelihood(self, requests, *args, **kwargs):
            return self._timed_call("loglikelihood", requests, *args, **kwargs)

        def loglikelihood_rolling(self, requests, *args, **kwargs):
            return self._timed_call("loglikelihood_rolling", requests, *args, **kwargs)

        def generate_until(self, requests, *args, **kwargs):
            return self._timed_call("generate_until", requests, *args, **kwargs)

    return TimedHFLM


def run_lm_eval(
    target: str | os.PathLike,
    tasks: list[str],
    include_path: str | os.PathLike | None = None,
    limit: int | None = None,
    num_fewshot: int | None = None,
    batch_size: int = 8,
    output: str | os.PathLike | None = None,
    max_length: int | None = None,
    trust_remote_code: bool = False,
    precision: str | None = None,
    keep_freed_memory: bool = True,
) -> tuple[dict[str, Any], Path]:
    """Run lm-eval's ``tasks`` on ``target``; write ``suite-lm-eval.json`` and return
    (results in the suite format, its path). ``include_path``: a folder of task YAMLs (for
    local data offline; ``lm_eval_tasks/`` ships BoolQ and WikiText-2 on ../shared/data).
    ``keep_freed_memory``: the process keeps freed blocks for reuse, as tunelab's own scoring
    does (:func:`~tunelab.utils.memory.retain_freed_memory`); lm-eval's full-vocabulary logits
    are hundreds of MB per batch (BoolQ in ``benchmarks/bench_eval.py``: 11 % less request
    time, minor page faults 2.2 M -> 0.37 M for 96 rows). False: glibc's defaults, as lm-eval's
    own command line runs."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ConfigError("--lm-eval needs lm-evaluation-harness: pip install lm-eval") from None
    if not tasks:
        raise ConfigError("--lm-eval: name at least one task")
    if include_path is not None and not Path(include_path).is_dir():
        raise ConfigError(f"--include-path {include_path}: no such folder")
    t = load_generation_target(target, trust_remote_code, precision=precision)
    manager = TaskManager(include_path=str(include_path) if include_path else None)
    unknown = [x for x in tasks if x not in manager.all_tasks]
    if unknown:
        raise ConfigError(
            f"--lm-eval: unknown task(s) {', '.join(unknown)}; offline, point lm-eval at local "
            "files with --include-path DIR holding a task YAML (see lm_eval_tasks/)"
        )
    model = t.accelerator.unwrap_model(t.model)
    if keep_freed_memory:
        retain_freed_memory()
    sizes = {"max_length": max_length} if max_length else {}  # else lm-eval's own default
    lm = _timed(HFLM)(
        pretrained=_positional(model), tokenizer=t.tokenizer, batch_size=batch_size, **sizes
    )
    started = time.perf_counter()
    with t.accelerator.autocast():
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=list(tasks),
            task_manager=manager,
            limit=limit,
            num_fewshot=num_fewshot,
            log_samples=True,
            bootstrap_iters=0,
        )
    results = as_suite(out, str(target), limit, num_fewshot)
    results["seconds"] = round(time.perf_counter() - started, 3)  # lm-eval's own work, no loading
    results["request_seconds"] = round(lm.request_seconds, 3)  # its scoring requests alone
    if t.run is not None and output is None:
        path = rundir.eval_path(t.run.run_dir, "suite-lm-eval")
    else:
        path = (
            Path(output or Path("runs") / f"eval-{Path(str(target)).name}") / "suite-lm-eval.json"
        )
    if t.accelerator.is_main_process:
        atomic_write_json(path, results)
    return results, path


def as_suite(out: dict[str, Any], target: str, limit, num_fewshot) -> dict[str, Any]:
    """lm-eval's results as a tunelab suite result (one entry per task, its per-row samples)."""
    tasks: dict[str, Any] = {}
    for name, res in out["results"].items():
        clean = {
            k.split(",")[0]: v
            for k, v in res.items()
            if "," in k and "stderr" not in k and isinstance(v, (int, float))
        }
        samples = out.get("samples", {}).get(name, [])
        metric = next(iter(clean), "")
        scale = 100.0 if metric in ("acc", "acc_norm") else 1.0
        tasks[name] = {
            "metric": metric,
            "clean": {k: v * scale if k in ("acc", "acc_norm") else v for k, v in clean.items()},
            "n": len(samples),
            "backend": "lm-eval",
            "rows": [_sample_row(s) for s in samples],
        }
    return {
        "suite": "lm-eval",
        "target": target,
        "tasks": tasks,
        "limit": limit,
        "num_fewshot": num_fewshot,
        "lm_eval_version": out.get("lm_eval_version"),
    }


def _sample_row(s: dict[str, Any]) -> dict[str, Any]:
    resps = s.get("filtered_resps") or s.get("resps") or []
    lls = [float(r[0]) if isinstance(r, (list, tuple)) else float(r) for r in resps]
    return {"doc_id": s.get("doc_id"), "loglikelihoods": lls, "target": str(s.get("target"))}
