"""Several adapters on one base model: side by side (pick one per call) or combined.

``load_adapters({"sst2": RUN_A, "imdb": RUN_B})`` loads the PEFT adapters of finished LoRA /
DoRA / IA3 runs onto one copy of their shared base model; ``.use(name)`` gives a
:class:`~tunelab.workflows.runs.LoadedRun` that ``tunelab.predict`` and ``tunelab.evaluate`` accept.
``combine_adapters`` writes a new run whose LoRA update is the weighted sum of the runs' updates
(PEFT's ``add_weighted_adapter``) and whose task head is their weighted average.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from tunelab import rundir
from tunelab.errors import ConfigError, RunDirError
from tunelab.methods import method_class, methods_where
from tunelab.utils.io import atomic_directory, atomic_write_json, atomic_write_yaml
from tunelab.workflows.runs import LoadedRun, OpenedRun, open_run, predict


def named_runs(items: list[str]) -> dict[str, str]:
    """``[NAME=]RUN_DIR`` arguments as ``{name: run_dir}`` (a bare path is named by its folder)."""
    runs: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).name, item
        if name in runs:
            raise ConfigError(f"two runs are named {name!r}; name them: NAME=RUN_DIR")
        runs[name] = path
    return runs


def parse_weights(text: str | None, runs: dict[str, Any]) -> dict[str, float] | None:
    """``"0.7,0.3"``: one combination weight per run, in order (None: equal weights)."""
    if not text:
        return None
    try:
        values = [float(w) for w in text.split(",")]
    except ValueError:
        raise ConfigError(f"--weights {text!r}: comma-separated numbers") from None
    if len(values) != len(runs):
        raise ConfigError(f"--weights has {len(values)} values for {len(runs)} runs")
    return dict(zip(runs, values))


def _check_runs(
    runs: dict[str, Any],
    allowed: list[str],
    trust_remote_code: bool = False,
    precision: str | None = None,
) -> dict[str, OpenedRun]:
    """Open each run; check they share base model, task and a PEFT method."""
    if not runs:
        raise ConfigError("give at least one run")
    opened: dict[str, OpenedRun] = {}
    for name, path in runs.items():
        if not name or "/" in name or name.startswith("."):
            raise ConfigError(f"adapter name {name!r} must be a plain word")
        opened[name] = open_run(Path(path), trust_remote_code, precision)
    first = next(iter(opened.values()))
    first_dir, info0 = first.run_dir, first.info
    for run in opened.values():
        d, cfg, info = run.run_dir, run.config, run.info
        if cfg.method not in allowed:
            raise ConfigError(
                f"{d}: method {cfg.method} is not an adapter this can load side by side or "
                f"combine; allowed: {', '.join(allowed)}"
            )
        if info["model"]["path"] != info0["model"]["path"]:
            raise ConfigError(
                f"{d} adapts {info['model']['name']}, {first_dir} adapts "
                f"{info0['model']['name']}: adapters must share one base model"
            )
        if adapter_kind(info["task"]) != adapter_kind(info0["task"]):
            raise ConfigError(
                f"{d} and {first_dir} are different kinds of task "
                f"({adapter_kind(info['task'])} vs {adapter_kind(info0['task'])})"
            )
        generative = info["task"].get("type") in ("generation", "mixture", "preference") and (
            info["task"].get("type") != "mixture"
            or not any(t["type"] == "classification" for t in info["task"]["tasks"].values())
        )
        if info["task"] != info0["task"] and not generative:  # a shared head needs one task
            raise ConfigError(
                f"{d} and {first_dir} differ in their task (labels or columns); a shared head "
                "needs the same labels"
            )
    return opened


def adapter_kind(meta: dict[str, Any]) -> tuple:
    """What adapters must share to sit on one base, from a run's task metadata: a preference
    run's adapter is a language model's, like a generation run's (so an SFT and a DPO adapter
    load side by side)."""
    if meta.get("type") == "preference":
        return ("generation", bool(meta.get("seq2seq", False)))
    if meta.get("type") == "mixture":
        kinds = {t["type"] for t in meta["tasks"].values()}
        seq2seq = {t.get("seq2seq", False) for t in meta["tasks"].values()}
        return (kinds.pop() if len(kinds) == 1 else "mixed", seq2seq == {True})
    return (meta.get("type"), bool(meta.get("seq2seq", False)))


def _expand(runs: dict[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """A per-task adapter run (its ``adapters.json``) stands for its tasks' runs."""
    if isinstance(runs, (str, os.PathLike)):
        index = Path(runs) / rundir.ADAPTERS
        if not index.is_file():
            raise RunDirError(
                f"{runs} holds no per-task adapters (no adapters.json); pass "
                "{name: RUN_DIR, ...} instead"
            )
        return json.loads(index.read_text(encoding="utf-8"))["adapters"]
    return dict(runs)


class AdapterSet:
    """PEFT adapters of several runs on one base model."""

    def __init__(
        self,
        runs: dict[str, str | os.PathLike] | str | os.PathLike,
        trust_remote_code: bool = False,
        precision: str | None = None,
    ):
        from peft import PeftModel

        runs = _expand(runs)
        peft_methods = methods_where(saves_peft_adapter=True)
        opened = self.opened = _check_runs(runs, peft_methods, trust_remote_code, precision)
        name0, first = next(iter(opened.items()))
        self.task, self.accelerator = first.task, first.accelerator
        base = first.task.build_model(first.resolved, trust_remote_code)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            folder0 = first.run_dir / rundir.MODEL
            model = PeftModel.from_pretrained(base, folder0, adapter_name=name0)
            for name, run in list(opened.items())[1:]:
                model.load_adapter(run.run_dir / rundir.MODEL, adapter_name=name)
        self.model = model.eval()
        self.names = list(opened)

    def use(self, name: str):
        """The set with adapter ``name`` active, as a run that predict/evaluate accept."""
        if name not in self.names:
            raise ConfigError(f"no adapter {name!r}; loaded: {', '.join(self.names)}")
        self.model.set_adapter(name)
        run = self.opened[name]
        return LoadedRun(run.run_dir, run.config, run.task, self.model, self.accelerator, run.info)

    def predict(self, texts: list[str], adapter: str, **kw) -> list[dict[str, Any]]:
        return predict(self.use(adapter), texts=texts, **kw)


def load_adapters(runs: dict[str, str | os.PathLike] | str | os.PathLike) -> AdapterSet:
    """Load the adapters of finished runs side by side on one base model (or the per-task
    adapters of a ``mixture.adapters=per_task`` run, by its directory)."""
    return AdapterSet(runs)


def combine_adapters(
    runs: dict[str, str | os.PathLike],
    weights: dict[str, float] | None = None,
    output: str | os.PathLike = "runs/combined",
    combination: str = "cat",
    overwrite: bool = False,
    density: float = 0.5,
) -> Path:
    """Write a run whose LoRA update is ``sum_i w_i * update_i`` and whose head is the
    weighted average of the runs' heads (weights normalised to sum to 1 for the head).

    ``combination``: ``cat`` (exact weighted sum; the rank is the sum of ranks), ``linear``
    (same-rank adapters: weighted sum of the A and B factors, approximate) or ``ties``/
    ``dare_linear`` (PEFT's pruned merges, keeping the ``density`` share of each update).
    Returns the new run directory.
    """
    with rundir.claim(Path(output), "tunelab combine"):  # one writer of the new run at a time
        return _combine(runs, weights, output, combination, overwrite, density)


def _combine(
    runs: dict[str, str | os.PathLike],
    weights: dict[str, float] | None,
    output: str | os.PathLike,
    combination: str,
    overwrite: bool,
    density: float,
) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    opened = _check_runs(_expand(runs), methods_where(combinable=True))
    names = list(opened)
    weights = dict(weights or {n: 1.0 / len(names) for n in names})
    if set(weights) != set(names):
        raise ConfigError(f"weights are for {sorted(weights)}, the runs are {sorted(names)}")
    if sum(weights.values()) == 0:
        raise ConfigError("the weights sum to zero")
    allowed = ("cat", "linear", "ties", "dare_linear", "dare_ties", "svd")
    if combination not in allowed:
        raise ConfigError(f"combination {combination!r}; allowed: {', '.join(allowed)}")
    out = Path(output)
    if out.exists() and not overwrite:
        raise RunDirError(f"{out} already exists; pass --overwrite to replace it")

    first = next(iter(opened.values()))
    dir0, cfg, info, resolved, task = (
        first.run_dir,
        first.config,
        first.info,
        first.resolved,
        first.task,
    )
    heads: dict[str, torch.Tensor] = {}
    total = sum(weights.values())
    model = None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        base = task.build_model(resolved)
        for name, run in opened.items():
            d = run.run_dir
            lc = LoraConfig.from_pretrained(str(d / rundir.MODEL))
            head_names = list(dict.fromkeys(lc.modules_to_save or []))
            # PEFT cannot combine adapters that carry a head (and a SEQ_CLS task type adds one)
            lc.modules_to_save, task_type = None, lc.task_type
            lc.task_type = None
            lc.inference_mode = True
            if model is None:
                model = get_peft_model(base, lc, adapter_name=name)
            else:
                model.add_adapter(name, lc)
            lora_state = {}
            for key, t in load_file(str(d / rundir.MODEL / "adapter_model.safetensors")).items():
                if "lora_" in key:
                    lora_state[key] = t
                else:  # the task head, stored under its own name
                    heads[key] = heads.get(key, 0) + t * (weights[name] / total)
            result = set_peft_model_state_dict(model, lora_state, adapter_name=name)
            if getattr(result, "unexpected_keys", None):
                raise RunDirError(
                    f"{d}: adapter weights that fit no module: {result.unexpected_keys[:3]}"
                )
        try:
            extra = {"density": density} if combination.startswith(("ties", "dare")) else {}
            model.add_weighted_adapter(
                names,
                [weights[n] for n in names],
                "combined",
                combination_type=combination,
                **extra,
            )
        except (ValueError, TypeError) as e:
            raise ConfigError(f"cannot combine these adapters: {e}") from None
        for n in names:
            model.delete_adapter(n)
    with atomic_directory(out) as tmp:
        (tmp / rundir.MODEL).mkdir()
        model.save_pretrained(tmp / "model_peft", selected_adapters=["combined"])
        src = tmp / "model_peft" / "combined"
        if not src.is_dir():
            src = tmp / "model_peft"
        state = load_file(str(src / "adapter_model.safetensors"))
        state.update({k: v.contiguous() for k, v in heads.items()})
        save_file(state, str(tmp / rundir.MODEL / "adapter_model.safetensors"))
        acfg = json.loads((src / "adapter_config.json").read_text())
        acfg["modules_to_save"] = head_names or None
        acfg["task_type"] = task_type
        (tmp / rundir.MODEL / "adapter_config.json").write_text(json.dumps(acfg, indent=2))
        shutil.rmtree(tmp / "model_peft")
        rundir.copy_tokenizer_files(dir0 / rundir.MODEL, tmp / rundir.MODEL)
        new_cfg = cfg.to_dict()
        # the runs share one combinable method (LoRA): so does the combination, at its new rank
        new_cfg[method_class(cfg.method).settings_key()]["r"] = int(acfg["r"])
        new_cfg["output"].update(dir=str(out.parent), name=out.name)
        atomic_write_yaml(tmp / rundir.CONFIG, new_cfg)
        new_info = {k: info[k] for k in ("tunelab_version", "model", "task", "method") if k in info}
        new_info.update(
            status="completed",
            combined_from={n: {"run": str(opened[n].run_dir), "weight": weights[n]} for n in names},
            combination=combination,
        )
        atomic_write_json(tmp / rundir.RUN_INFO, new_info)
    return out
