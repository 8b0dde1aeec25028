"""tunelab's training loop on Accelerate: one loop for every method and task.

It owns the optimizer, schedule, mixed precision, gradient accumulation, clipping,
non-finite step skipping, periodic evaluation, best-model selection, early stopping,
complete checkpoints and exact resume. It never branches on the method or the task.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunelab import rundir
from tunelab.data.batching import BatchSampler
from tunelab.errors import RunInterrupted, TunelabError
from tunelab.evaluation.metrics import greater_is_better, scalar_metrics
from tunelab.models.layers import count_layers, in_head, layer_index
from tunelab.training import checkpoint as ckpt
from tunelab.training import trackers
from tunelab.training.faults import fault_point
from tunelab.utils.io import append_jsonl, atomic_write_json, atomic_write_jsonl


@dataclass
class LoopState:
    """Counters that a checkpoint restores (besides weights, optimizer, RNG and sampler)."""

    step: int = 0
    examples: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    bad_steps: int = 0
    skipped_steps: int = 0


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MB."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 / 1024 if sys.platform == "darwin" else rss / 1024


def lr_lambda(total: int, warmup: int, kind: str):
    def fn(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        progress = min(max(progress, 0.0), 1.0)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return fn


def lr_multiplier(name: str, n_layers: int, head_modules: list[str], tc) -> float:
    """Per-parameter learning-rate factor: ``head_lr_scale`` for the task head, and with
    ``layer_lr_decay`` d, d**(n_layers - i) for layer i (embeddings: d**(n_layers + 1))."""
    if in_head(name, head_modules):
        return tc.head_lr_scale
    d = tc.layer_lr_decay
    if d is None or n_layers <= 0:
        return 1.0
    i = layer_index(name)
    if i is not None:
        return d ** (n_layers - i)
    return d ** (n_layers + 1) if "embed" in name else 1.0


def build_optimizer(model, tc, head_modules: list[str] | None = None):
    """AdamW with weight decay off for biases and norm weights; fused/foreach where available."""
    import torch

    n_layers = count_layers(model)
    groups: dict[tuple[float, float], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        wd = 0.0 if p.ndim < 2 or "norm" in name.lower() else tc.weight_decay
        mult = lr_multiplier(name, n_layers, head_modules or [], tc)
        groups.setdefault((wd, mult), []).append(p)
    if not groups:
        raise TunelabError("the method left no trainable parameters")
    param_groups = [
        {"params": ps, "weight_decay": wd, "lr": tc.lr * mult} for (wd, mult), ps in groups.items()
    ]
    kw = {"lr": tc.lr, "betas": tuple(tc.adam_betas), "eps": tc.adam_eps}
    try:
        return torch.optim.AdamW(param_groups, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(param_groups, foreach=True, **kw)


class Trainer:
    """Runs one training job. Create through :func:`tunelab.api.train`."""

    def __init__(
        self,
        cfg,
        accelerator,
        model,
        method,
        task,
        train_split,
        val_split,
        run_dir: Path,
        console=None,
        fingerprint: dict[str, str] | None = None,
        difficulty: list[float] | None = None,
    ):
        self.cfg, self.tc = cfg, cfg.training
        self.fingerprint = fingerprint or {}
        #: the stop signals of the run (a :class:`~tunelab.training.stop.StopSignals`), if any
        self.stops = None
        self.acc, self.model, self.method, self.task = accelerator, model, method, task
        self.train_split, self.val_split = train_split, val_split
        self.run_dir, self.console = run_dir, console
        self.ckpt_root = run_dir / rundir.CHECKPOINTS
        self.state = LoopState()
        tc = self.tc
        world = accelerator.num_processes
        n_batches = -(-len(train_split) // (tc.batch_size * world))
        self.steps_per_epoch = max(1, math.ceil(n_batches / tc.grad_accum))
        self.total_steps = tc.max_steps or max(1, math.ceil(tc.epochs * self.steps_per_epoch))
        self.eval_every = tc.eval_every or self.steps_per_epoch
        self.difficulty = difficulty
        self.greater = (
            tc.greater_is_better
            if tc.greater_is_better is not None
            else greater_is_better(tc.metric)
        )
        self.eval_bs = tc.eval_batch_size or 2 * tc.batch_size
        self.trace: list[list] | None = [] if tc.trace_examples else None
        #: (step, metrics, prediction rows) of the latest validation pass
        self.last_eval: tuple[int, dict, list] | None = None
        #: the step whose weights the model holds when fit() returns
        self.weights_step = 0
        #: callables (step, metrics) -> a stop reason or None, after each periodic evaluation
        self.eval_hooks: list = []

        optimizer = build_optimizer(model, tc, task.head_modules(model))
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        import torch

        warmup = int(tc.warmup_ratio * self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(self.total_steps, warmup, tc.scheduler)
        )
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.sampler = self._make_sampler()
        #: L2-SP anchors: the starting values of the trained pretrained weights (not the head)
        self.anchors: list[tuple[Any, Any]] = []
        if tc.l2sp:
            head = task.head_modules(model)
            self.anchors = [
                (p, p.detach().clone())
                for n, p in accelerator.unwrap_model(self.model).named_parameters()
                if p.requires_grad and not in_head(n, head)
            ]

    def _make_sampler(self):
        """The training batches: a task mixture's own sampler, a curriculum, or length-grouped
        shuffled epochs."""
        tc, acc, split = self.tc, self.acc, self.train_split
        total_batches = self.total_steps * tc.grad_accum
        args = (tc.batch_size, tc.seed, acc.num_processes, acc.process_index)
        own = self.task.make_sampler(split, *args, total_batches=total_batches)
        if own is not None:
            return own
        cur = self.cfg.curriculum
        if cur.by != "none":
            from tunelab.data.curriculum import CurriculumSampler

            difficulty = self.difficulty
            if cur.by == "length":
                difficulty = split.lengths
            elif cur.by == "loss":
                difficulty = self.task.example_losses(self.model, split, self.eval_bs, acc)
                self.model.train()
            if difficulty is None or len(difficulty) != len(split):
                raise TunelabError(f"curriculum.by={cur.by}: no difficulty for every example")
            return CurriculumSampler(
                difficulty,
                tc.batch_size,
                total_batches,
                pacing=cur.pacing,
                start=cur.start,
                full_at=cur.full_at,
                seed=tc.seed,
                world_size=acc.num_processes,
                rank=acc.process_index,
            )
        return BatchSampler(
            split.lengths,
            tc.batch_size,
            seed=tc.seed,
            group_by_length=self.cfg.groups_by_length(),
            world_size=acc.num_processes,
            rank=acc.process_index,
        )

    # -- logging -------------------------------------------------------------------------
    def log(self, row: dict[str, Any]) -> None:
        if self.acc.is_main_process:
            append_jsonl(self.run_dir / rundir.METRICS, row)
            trackers.log_row(self.acc, row)  # training.report_to gets every row too

    def say(self, msg: str) -> None:
        if self.acc.is_main_process and self.console is not None:
            self.console.print(msg)

    # -- checkpoints ------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        from accelerate.utils import gather_object

        rngs = [ckpt.rng_state()]
        if self.acc.num_processes > 1:
            rngs = gather_object(rngs)
        if self.acc.is_main_process:
            unwrapped = self.acc.unwrap_model(self.model)
            state = asdict(self.state)
            state["sampler"] = self.sampler.state_dict()
            state["config"] = self.cfg.to_dict()
            state["fingerprint"] = self.fingerprint
            scaler = getattr(self.acc, "scaler", None)
            state["scaler"] = scaler.state_dict() if scaler is not None else None
            ckpt.save_checkpoint(
                self.ckpt_root,
                self.state.step,
                weights=self.method.trainable_state(unwrapped),
                optimizer_state=self.optimizer.state_dict(),
                scheduler_state=self.scheduler.state_dict(),
                rng_states=rngs,
                loop_state=state,
                keep_last=self.tc.keep_last,
            )
        self.acc.wait_for_everyone()

    def restore(self, data: dict[str, Any]) -> None:
        """Continue exactly where a checkpoint left off."""
        state = dict(data["state"])
        self.sampler.load_state_dict(state.pop("sampler"))
        for key in ("config", "fingerprint"):
            state.pop(key, None)
        scaler_state = state.pop("scaler", None)
        if scaler_state is not None and getattr(self.acc, "scaler", None) is not None:
            self.acc.scaler.load_state_dict(scaler_state)
        self.state = LoopState(**state)
        if self.acc.is_main_process:
            ckpt.remove_partial(self.ckpt_root)
            self._prune_best(keep=self.state.best_step)
        self.method.load_trainable_state(self.acc.unwrap_model(self.model), data["weights"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        rngs = data["rng"]
        if len(rngs) != self.acc.num_processes:
            raise TunelabError(
                f"checkpoint {data['path']} was written by {len(rngs)} process(es); "
                f"resume it with the same number (now {self.acc.num_processes})"
            )
        ckpt.set_rng_state(rngs[self.acc.process_index])

    def save_best(self) -> None:
        if self.acc.is_main_process:
            from safetensors.torch import save_file

            from tunelab.utils.io import atomic_directory

            weights = self.method.trainable_state(self.acc.unwrap_model(self.model))
            with atomic_directory(self._best_dir(self.state.step)) as tmp:
                save_file(
                    {k: v.contiguous().cpu() for k, v in weights.items()},
                    str(tmp / "weights.safetensors"),
                )
                (tmp / ckpt.MARKER).write_text(f"step {self.state.step}\n")
            self._prune_best(keep=self.state.step)
        self.acc.wait_for_everyone()

    def _best_dir(self, step: int) -> Path:
        # One folder per best step: after a crash and resume, the state names its own best,
        # never one written by the lost part of the timeline.
        return self.ckpt_root / f"best-{step:07d}"

    def _prune_best(self, keep: int | None) -> None:
        import shutil

        for p in self.ckpt_root.glob("best-*"):
            if keep is None or p != self._best_dir(keep):
                shutil.rmtree(p, ignore_errors=True)

    def load_best(self) -> None:
        from safetensors.torch import load_file

        path = self._best_dir(self.state.best_step) / "weights.safetensors"
        self.method.load_trainable_state(self.acc.unwrap_model(self.model), load_file(str(path)))

    # -- evaluation -------------------------------------------------------------------------
    def evaluate(self, tag: str = "validation") -> dict[str, Any]:
        metrics, rows = self.task.evaluate(self.model, self.val_split, self.eval_bs, self.acc)
        self.last_eval = (self.state.step, metrics, rows)
        self.model.train()
        row = {
            "type": "eval",
            "split": tag,
            "step": self.state.step,
            "epoch": round(self.state.step / self.steps_per_epoch, 4),
            **scalar_metrics(metrics),
        }
        self.log(row)
        if tag == "validation_before" and self.acc.is_main_process:
            # the zero-shot side of a before/after comparison, recomputable like the final one
            atomic_write_json(rundir.eval_path(self.run_dir, tag), metrics)
            if self.cfg.output.save_predictions:
                atomic_write_jsonl(rundir.predictions_path(self.run_dir, tag), rows)
        return metrics

    def _after_eval(self, metrics: dict[str, Any]) -> bool:
        """Track the best model; return True when early stopping says stop."""
        if self.tc.metric not in metrics:
            raise TunelabError(
                f"training.metric={self.tc.metric!r} is not produced by this task; "
                f"available: {', '.join(scalar_metrics(metrics))}"
            )
        value = float(metrics[self.tc.metric])
        best = self.state.best_metric
        improved = best is None or (value > best if self.greater else value < best)
        if improved:
            self.state.best_metric, self.state.best_step = value, self.state.step
            self.state.evals_without_improvement = 0
            if self.tc.load_best:
                self.save_best()
        else:
            self.state.evals_without_improvement += 1
        patience = self.tc.early_stopping_patience
        return patience is not None and self.state.evals_without_improvement >= patience

    def _mix_fields(self) -> dict[str, Any]:
        """A task mixture's realised share of examples per task so far."""
        mix = getattr(self.sampler, "realised_mix", None)
        return {"mix": {k: round(v, 4) for k, v in mix().items()}} if mix else {}

    # -- the loop ---------------------------------------------------------------------------
    def _micro_batches(self, it):
        return [next(it) for _ in range(self.tc.grad_accum)]

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.acc.device) if hasattr(v, "to") else v for k, v in batch.items()}

    def train_step(self, micro: list[list[int]]):
        """One optimizer step over ``grad_accum`` micro-batches; returns (loss, grad_norm, ok)."""
        import torch

        feats = self.train_split.features
        n_total = sum(len(b) for b in micro)
        loss_sum = torch.zeros((), device=self.acc.device)
        for j, idx in enumerate(micro):
            batch = self._to_device(self.task.collate([feats[i] for i in idx]))
            sync = j == len(micro) - 1
            ctx = contextlib.nullcontext() if sync else self.acc.no_sync(self.model)
            with ctx:
                with self.acc.autocast():
                    loss = self.task.loss(self.model, batch) * (len(idx) / n_total)
                self.acc.backward(loss)
            loss_sum += loss.detach().float()
            if self.trace is not None:
                self.trace.append([self.train_split.records[i].get("row", i) for i in idx])
            self.state.tokens += sum(len(feats[i]["input_ids"]) for i in idx)  # real tokens
        self.state.examples += n_total * self.acc.num_processes
        max_norm = self.tc.max_grad_norm if self.tc.max_grad_norm is not None else float("inf")
        grad_norm = self.acc.clip_grad_norm_(self.params, max_norm)
        fault_point("step", self.state.step + 1)
        loss_all = (
            self.acc.reduce(loss_sum, reduction="mean") if self.acc.num_processes > 1 else loss_sum
        )
        ok = bool(torch.isfinite(loss_all)) and bool(torch.isfinite(torch.as_tensor(grad_norm)))
        if ok:
            self.optimizer.step()
            if self.anchors:
                self._pull_to_anchors()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss_all), float(grad_norm), ok

    def _pull_to_anchors(self) -> None:
        """L2-SP, decoupled: θ ← θ − lr·α·(θ − θ₀) for every anchored weight."""
        import torch

        lr = self.scheduler.get_last_lr()[0]
        with torch.no_grad():
            for p, p0 in self.anchors:
                p.sub_(p - p0, alpha=lr * self.tc.l2sp)

    def fit(self, resume_from: dict[str, Any] | None = None) -> dict[str, Any]:
        tc = self.tc
        if resume_from is not None:
            self.restore(resume_from)
            self.say(f"resumed from {resume_from['path']} at step {self.state.step}")
        self.model.train()
        before = None
        if resume_from is None and tc.eval_before:
            before = scalar_metrics(self.evaluate("validation_before"))
            self.model.train()
        it = iter(self.sampler)
        stop_reason = "completed"
        from tunelab.reporting.progress import TrainProgress

        progress = TrainProgress(
            self.total_steps,
            enabled=tc.progress and self.acc.is_main_process,
            console=self.console,
            start=self.state.step,
        )
        window_loss, window_n, t_window, ex_window = (
            0.0,
            0,
            time.perf_counter(),
            self.state.examples,
        )
        with progress:
            while self.state.step < self.total_steps:
                if self.stops is not None and self.stops.agreed(self.acc):
                    self._stop_on_signal()
                t0 = time.perf_counter()
                micro = self._micro_batches(it)
                loss, grad_norm, ok = self.train_step(micro)
                self.state.train_seconds += time.perf_counter() - t0
                self.state.step += 1
                self._write_trace()
                if not ok:
                    self._skipped_step(loss, grad_norm)
                else:
                    self.state.bad_steps = 0
                    window_loss, window_n = window_loss + loss, window_n + 1
                lr = self.scheduler.get_last_lr()[0]
                if self.state.step % tc.log_every == 0 or self.state.step == self.total_steps:
                    dt = max(time.perf_counter() - t_window, 1e-9)
                    eps = (self.state.examples - ex_window) / dt
                    self.log(
                        {
                            "type": "train",
                            "step": self.state.step,
                            "epoch": round(self.state.step / self.steps_per_epoch, 4),
                            "loss": window_loss / max(window_n, 1),
                            "lr": lr,
                            "grad_norm": grad_norm,
                            "examples_per_s": eps,
                            "examples": self.state.examples,
                            "tokens": self.state.tokens,
                            **self._mix_fields(),
                        }
                    )
                    window_loss, window_n = 0.0, 0
                    t_window, ex_window = time.perf_counter(), self.state.examples
                progress.update(
                    self.state.step,
                    loss=loss,
                    lr=lr,
                    eps=self.state.examples / max(self.state.train_seconds, 1e-9),
                )
                at_end = self.state.step >= self.total_steps
                stop, hooked = False, []
                if self.state.step % self.eval_every == 0 or at_end:
                    metrics = self.evaluate()
                    stop = self._after_eval(metrics)
                    hooked = [r for h in self.eval_hooks if (r := h(self.state.step, metrics))]
                    shown = ", ".join(
                        f"{k}={v:.4f}" for k, v in scalar_metrics(metrics).items() if k != "n"
                    )
                    progress.note(f"step {self.state.step}: {shown}")
                    if tc.save_checkpoints and not tc.save_every:
                        self.save_checkpoint()
                if tc.save_checkpoints and tc.save_every and self.state.step % tc.save_every == 0:
                    self.save_checkpoint()
                if stop or hooked:
                    stop_reason = hooked[0] if hooked else "early_stopping"
                    break
        return self._finish(stop_reason, before)

    def _stop_on_signal(self) -> None:
        """Write the checkpoint of the step just finished, then end the run as interrupted."""
        from tunelab.training import faults

        name, step = self.stops.name, self.state.step
        saved = self.tc.save_checkpoints
        self.say(
            f"[yellow]{name}: stopping after step {step}"
            + (", writing its checkpoint" if saved else "")
        )
        if saved:
            self.stops.saving = faults.stopping = True
            try:
                self.save_checkpoint()
            finally:
                self.stops.saving = faults.stopping = False
        self.log({"type": "stop", "step": step, "signal": name, "checkpoint": saved})
        where = f"; its checkpoint is in {ckpt.step_dir(self.ckpt_root, step)}" if saved else ""
        raise RunInterrupted(
            f"interrupted by {name} after step {step}{where}; continue with --resume (resume=true)",
            step,
            name,
            saved,
        )

    def _write_trace(self) -> None:
        if self.trace is not None:
            append_jsonl(
                rundir.trace_file(self.run_dir, self.acc.process_index),
                {"step": self.state.step, "rows": [r for b in self.trace for r in b]},
            )
            self.trace.clear()

    def _skipped_step(self, loss: float, grad_norm: float) -> None:
        """A non-finite loss or gradient: the step is skipped, and too many in a row stop."""
        self.state.bad_steps += 1
        self.state.skipped_steps += 1
        self.log(
            {
                "type": "skip",
                "step": self.state.step,
                "loss": loss,
                "grad_norm": grad_norm,
                "reason": "non-finite loss or gradient",
            }
        )
        self.say(f"[yellow]step {self.state.step}: non-finite loss/gradient, step skipped")
        if self.state.bad_steps >= self.tc.max_bad_steps:
            self.save_checkpoint()
            raise TunelabError(
                f"stopped after {self.state.bad_steps} consecutive non-finite steps "
                f"(training.max_bad_steps); checkpoint saved at step {self.state.step}. "
                "Lower training.lr or check the data."
            )

    def _finish(self, stop_reason: str, before: dict[str, Any] | None) -> dict[str, Any]:
        """Pick the final weights (the best evaluation's, if asked) and summarise the run."""
        tc = self.tc
        self.weights_step = self.state.step
        if (
            tc.load_best
            and self.state.best_step is not None
            and self.state.best_step != self.state.step
        ):
            self.load_best()
            self.weights_step = self.state.best_step
            self.say(
                f"loaded best weights from step {self.state.best_step} "
                f"({tc.metric}={self.state.best_metric:.4f})"
            )
        return {
            "stop_reason": stop_reason,
            "steps": self.state.step,
            "examples": self.state.examples,
            "tokens": self.state.tokens,
            "train_seconds": self.state.train_seconds,
            "examples_per_s": self.state.examples / max(self.state.train_seconds, 1e-9),
            "skipped_steps": self.state.skipped_steps,
            "best_step": self.state.best_step,
            "best_metric": self.state.best_metric,
            "metric": tc.metric,
            "before": before,
            "peak_rss_mb": peak_rss_mb(),
        }
