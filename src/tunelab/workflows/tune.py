"""`tunelab tune`: hyperparameter search with Optuna, each trial an ordinary run directory.

Optuna provides the samplers, pruners, storages, heartbeats and the retry of a trial whose worker
died; tunelab adds what a study of fine-tuning runs needs: each trial is ``train_single`` on the
config with the trial's parameters applied as ``key=value`` overrides, into ``STUDY/trial-NNNN/``;
the pruner reads the loop's periodic validation scores; the objective is only ever a validation
score, and a test split is scored for the best trial alone. Several ``tunelab tune`` processes
given one storage URL (PostgreSQL, MySQL) work on one study: the trial budget is shared exactly
(a trial beyond it is recorded as a failed ``surplus`` trial that never trained)."""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab import rundir
from tunelab.config import RunConfig, load_config
from tunelab.config.search import TRAINABLE_PARAMS, SearchConfig, apply_params
from tunelab.errors import ConfigError, RunInterrupted, TunelabError
from tunelab.evaluation.metrics import greater_is_better, scalar_metrics

STUDY_DB = "study.db"


@dataclass
class TuneResult:
    """What :func:`tune` returns: the study folder, every trial's record and the best one(s)."""

    study_dir: Path
    study_name: str
    trials: list[dict[str, Any]]
    best: list[dict[str, Any]]
    best_test: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)


class _Surplus(Exception):
    """A trial begun after the study's budget was taken by other workers: it does not train."""


class _TrialFailed(Exception):
    """A trial's run ended with a tunelab error: the trial fails, the study goes on."""


#: trials of one worker that fail in a row before `tunelab tune` stops with the last error
MAX_FAILED_IN_A_ROW = 3


def objectives_of(cfg: RunConfig) -> tuple[list[str], list[str]]:
    """The objective names and their directions (inferred where not given)."""
    s = cfg.search
    names = list(s.objectives) or [s.metric or cfg.training.metric]
    if s.directions:
        return names, list(s.directions)
    if not s.objectives and s.direction:
        return names, [s.direction]
    inferred = [
        "minimize" if n == TRAINABLE_PARAMS or not greater_is_better(n) else "maximize"
        for n in names
    ]
    return names, inferred


def sampler_for(s: SearchConfig):
    import optuna

    if s.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=s.seed)
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.sampler == "grid":
        return optuna.samplers.GridSampler({k: p.choice for k, p in s.space.items()}, seed=s.seed)
    try:
        import cmaes  # noqa: F401  (Optuna's CmaEsSampler needs it)
    except ImportError:
        raise ConfigError(
            "search.sampler=cmaes needs the `cmaes` package: pip install cmaes"
        ) from None
    return optuna.samplers.CmaEsSampler(seed=s.seed)


def pruner_for(s: SearchConfig):
    import optuna

    kind = s.pruner or ("none" if s.multi else "median")
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=s.prune_startup_trials)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def suggest(trial, s: SearchConfig) -> dict[str, Any]:
    """The trial's parameters, define-by-run: a conditional one only where its `when` holds."""
    params: dict[str, Any] = {}
    for key in s.ordered_keys():
        p = s.space[key]
        if any(params.get(dep) not in values for dep, values in p.when.items()):
            continue
        if p.kind == "choice":
            params[key] = trial.suggest_categorical(key, p.choice)
        elif p.kind == "int":
            lo, hi = p.int_
            params[key] = trial.suggest_int(key, lo, hi, step=int(p.step or 1), log=p.log)
        else:
            lo, hi = p.float_
            params[key] = trial.suggest_float(key, lo, hi, step=p.step, log=p.log)
    return params


def trial_config(
    cfg: RunConfig,
    params: dict[str, Any],
    study_dir: Path,
    run_name: str,
    study_name: str,
    trial_number: int,
    retry: bool = False,
) -> RunConfig:
    """The config of one trial: ``cfg`` with ``params`` applied (as ``key=value`` would be),
    written to ``study_dir/run_name``, resuming its own checkpoint when re-run, without the
    test split (a ``retry`` of a trial whose worker died resumes its checkpoint, or starts its
    directory afresh when it has none). ``study_name`` and ``trial_number`` name the trial for
    experiment trackers."""
    base = {k: v for k, v in cfg.to_dict().items() if k != "search"}
    d = apply_params(base, params)
    d["output"] = {**d["output"], "dir": str(study_dir), "name": run_name, "overwrite": retry}
    d["data"] = {**d["data"], "test": None}
    d["resume"] = "auto"
    # experiment trackers: one run per trial (named after its folder), in the study's group
    group = d["training"].get("tracker_group") or study_name
    d["training"] = {**d["training"], "progress": False, "tracker_group": group}
    del trial_number  # the run name (trial-NNNN) carries it
    return load_config(d)


def _config_key(cfg: RunConfig) -> str:
    d = cfg.to_dict()
    d["output"] = {k: v for k, v in d["output"].items() if k != "dir"}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _objective_values(cfg, res, names: list[str]) -> list[float]:
    values = []
    for n in names:
        if n == TRAINABLE_PARAMS:
            values.append(float(res.params["trainable"]))
            continue
        scores = scalar_metrics(res.metrics)
        if n not in scores:
            raise ConfigError(
                f"search objective {n!r} is not a validation metric of this task; "
                f"available: {', '.join(scores)}, {TRAINABLE_PARAMS}"
            )
        values.append(scores[n])
    return values


class _Objective:
    """Optuna's objective: one trial = one ordinary tunelab run."""

    def __init__(self, cfg, study_dir: Path, study_name: str, n_trials: int, console):
        self.cfg, self.study_dir, self.study_name = cfg, study_dir, study_name
        self.n_trials, self.console = n_trials, console
        self.names, _ = objectives_of(cfg)
        #: this worker's consecutive failed trials (their errors)
        self.failed: list[str] = []

    def __call__(self, trial) -> float | list[float]:
        import optuna

        from tunelab.workflows.single import train_single

        if self._surplus(trial):
            trial.set_user_attr("surplus", True)
            raise _Surplus(f"trial {trial.number}: the study's {self.n_trials} trials are taken")
        params = suggest(trial, self.cfg.search)
        # a re-run of a trial whose worker died carries its run directory (Optuna copies the
        # user attributes into the retry) and resumes from its checkpoint there
        retry = "run_dir" in trial.user_attrs
        run_name = trial.user_attrs.get("run_dir") or f"trial-{trial.number:04d}"
        run_dir = self.study_dir / run_name
        trial.set_user_attr("run_dir", run_name)
        trial.set_user_attr("worker", rundir.this_process())
        tcfg = trial_config(
            self.cfg, params, self.study_dir, run_name, self.study_name, trial.number, retry
        )
        metric = self.names[0]
        pruned: dict[str, Any] = {}

        def report(step: int, metrics: dict[str, Any]) -> str | None:
            if self.cfg.search.multi or metric not in metrics:
                return None
            value = float(metrics[metric])
            trial.report(value, step)
            if trial.should_prune():
                pruned.update(step=step, value=value, metric=metric)
                return "pruned"
            return None

        if self.console:
            shown = ", ".join(f"{k}={v}" for k, v in params.items())
            self.console.print(f"[bold]trial {trial.number}[/] ({run_name}): {shown}")
        try:
            res = train_single(tcfg, [report])
        except RunInterrupted:  # Ctrl-C, SIGTERM: the next `tunelab tune` resumes this trial
            trial.study.enqueue_trial(
                trial.params, user_attrs={"run_dir": run_name, "retry_of": trial.number}
            )
            raise
        except TunelabError as e:
            message = (str(e).splitlines() or [type(e).__name__])[0][:500]
            trial.set_user_attr("error", message)
            self.failed.append(message)
            raise _TrialFailed(message) from e
        self.failed.clear()
        info = rundir.read_info(run_dir)
        info["trial"] = {"study": self.study_name, "number": trial.number, "params": params}
        if pruned:
            info["pruned"] = pruned
        rundir.write_info(run_dir, info)
        trial.set_user_attr("steps", res.summary.get("steps"))
        if pruned:
            raise optuna.TrialPruned(
                f"pruned at step {pruned['step']} ({metric}={pruned['value']})"
            )
        values = _objective_values(self.cfg, res, self.names)
        return values if self.cfg.search.multi else values[0]

    def _surplus(self, trial) -> bool:
        from optuna.trial import TrialState

        ahead = [
            t
            for t in trial.study.get_trials(deepcopy=False)
            if t.number < trial.number and t.state != TrialState.FAIL
        ]
        return len(ahead) >= self.n_trials


def _counts(study) -> dict[str, int]:
    from optuna.trial import TrialState

    out = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name.lower()] += 1
    return out


def _eta(spent: list[float], left: int) -> str:
    if not spent or left <= 0:
        return "0s"
    s = int(sum(spent) / len(spent) * left)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def progress_line(study, n: int, names: list[str], spent: list[float]) -> str:
    """``trial k/N · best so far · pruned count · ETA`` for the study as a whole."""
    c = _counts(study)
    done = c["complete"] + c["pruned"]
    line = f"trial {done}/{n}"
    if c["complete"] and len(names) == 1:
        b = study.best_trial
        line += f" · best {names[0]}={b.value:.4f} (trial {b.number})"
    elif c["complete"]:
        line += f" · Pareto front {len(study.best_trials)} trial(s)"
    return line + f" · pruned {c['pruned']} · ETA {_eta(spent, n - done)}"


def open_study(cfg: RunConfig, study_dir: Path, name: str, storage: str | None):
    """Create or load the Optuna study (a SQLite file in ``study_dir`` unless ``storage``)."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    s = cfg.search
    url = _driver_url(storage) if storage else f"sqlite:///{(study_dir / STUDY_DB).resolve()}"
    kw = {
        "heartbeat_interval": s.heartbeat_s,
        "grace_period": 2 * s.heartbeat_s,
        "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(
            max_retry=3, inherit_intermediate_values=True
        ),
        "engine_kwargs": {"pool_pre_ping": True},
    }
    for attempt in range(5):
        try:
            rdb = RDBStorage(url, **kw)
            break
        except (ImportError, ModuleNotFoundError) as e:
            raise ConfigError(
                f"--storage {url.split('://')[0]}: {e} (PostgreSQL: pip install "
                "psycopg2-binary; MySQL: pip install pymysql, with a mysql+pymysql:// URL)"
            ) from None
        except Exception as e:  # sqlalchemy's errors; workers creating the tables race
            if attempt == 4 or "duplicate" not in str(e).lower():
                raise TunelabError(
                    f"--storage: cannot open {_safe_url(url)}: {str(e).splitlines()[0]}"
                ) from None
            time.sleep(0.5 + attempt)
    _, directions = objectives_of(cfg)
    study = optuna.create_study(
        storage=rdb,
        study_name=name,
        sampler=sampler_for(s),
        pruner=pruner_for(s),
        directions=directions,
        load_if_exists=True,
    )
    key = _config_key(cfg)
    have = study.user_attrs.get("config_key")
    if have is None:
        study.set_user_attr("config_key", key)
        study.set_user_attr("config", cfg.to_dict())
    elif have != key:
        raise ConfigError(
            f"study {name!r} in {_safe_url(url)} was started with another config; "
            "continue it with the same config and overrides, or name a new --study"
        )
    return study, url


def _driver_url(url: str) -> str:
    """A plain ``postgresql://`` URL with the driver that is installed: SQLAlchemy 2.1 takes
    psycopg (3) for it, tunelab's extra installs psycopg2."""
    import importlib.util

    find = importlib.util.find_spec
    if url.startswith("postgresql://") and find("psycopg") is None and find("psycopg2"):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def _safe_url(url: str) -> str:
    """The storage URL without its password."""
    import re

    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def tune(
    config: str | os.PathLike | dict | RunConfig,
    overrides: list[str] | dict | None = None,
    trials: int = 20,
    timeout: float | None = None,
    study: str | None = None,
    storage: str | None = None,
    output: str | os.PathLike | None = None,
) -> TuneResult:
    """Search ``config``'s ``search.space`` with Optuna for ``trials`` trials in all (shared
    with any other worker of the same study and storage); return the study's record.

    ``timeout`` (seconds) starts no new trial once passed; a running trial is finished."""
    import optuna

    with warnings.catch_warnings():  # Optuna's heartbeat and retry are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _tune(config, overrides, trials, timeout, study, storage, output)


def _tune(config, overrides, trials, timeout, study, storage, output) -> TuneResult:
    import logging

    import optuna

    from tunelab.workflows.single import console_for
    from tunelab.workflows.tune_outputs import score_best_on_test, write_outputs

    cfg = load_config(config, overrides)
    if not cfg.search.space:
        raise ConfigError(
            "search.space: nothing to search; give parameters such as "
            "training.lr: {float: [1.0e-5, 1.0e-3], log: true}"
        )
    if trials < 1:
        raise ConfigError(f"--trials must be at least 1 (got {trials})")
    if cfg.mixture.tasks or cfg.stages:
        raise ConfigError(
            "tunelab tune searches single-task runs; mixture.tasks and stages are not supported"
        )
    if not cfg.data.train:
        raise ConfigError("data.train: no training data given (a file path or hub:ID)")
    if not cfg.data.validation and "training.seed" in cfg.search.space:
        raise ConfigError(
            "search.space.training.seed: without data.validation the held-out validation rows "
            "are drawn with training.seed, so trials would be scored on different rows"
        )
    name = study or cfg.output.name or "study"
    study_dir = Path(output) if output else Path(cfg.output.dir) / name
    study_dir.mkdir(parents=True, exist_ok=True)
    console = console_for()
    optuna.logging.set_verbosity(logging.WARNING)
    ostudy, url = open_study(cfg, study_dir, name, storage)
    names = objectives_of(cfg)[0]
    if not cfg.data.validation:
        console.print(
            f"[yellow]no data.validation: every trial is scored on the same "
            f"{cfg.data.validation_fraction:.0%} of train held out with seed {cfg.training.seed}"
        )
    objective = _Objective(cfg, study_dir, name, trials, console)
    spent: list[float] = []
    t0 = time.monotonic()
    while True:
        optuna.storages.fail_stale_trials(ostudy)
        c = _counts(ostudy)
        if c["complete"] + c["pruned"] >= trials:
            break
        if timeout is not None and time.monotonic() - t0 >= timeout:
            console.print(f"[yellow]--timeout {timeout:g}s reached: no new trial started")
            break
        if c["complete"] + c["pruned"] + c["running"] >= trials and not c["waiting"]:
            time.sleep(min(5.0, cfg.search.heartbeat_s))  # other workers hold the last trials
            continue
        start = time.monotonic()
        ostudy.optimize(objective, n_trials=1, catch=(_Surplus, _TrialFailed))
        if len(objective.failed) >= MAX_FAILED_IN_A_ROW:
            raise TunelabError(
                f"{len(objective.failed)} trials in a row failed; the last: {objective.failed[-1]}"
            )
        last = ostudy.get_trials(deepcopy=False)[-1:]
        if not (last and last[0].user_attrs.get("surplus")):
            spent.append(time.monotonic() - start)
        console.print(f"[bold cyan]{progress_line(ostudy, trials, names, spent)}")
    record_trials, best = study_records(ostudy, names)
    best_test = None
    done = sum(t["state"] in ("complete", "pruned") for t in record_trials)
    best_run = study_dir / best[0]["run_dir"] if len(best) == 1 else None
    if cfg.data.test and best_run is not None and done >= trials:
        if rundir.is_run_dir(best_run):
            best_test = score_best_on_test(cfg, best_run, console)
        else:
            console.print(
                f"best trial {best[0]['number']} ran in another worker's folder: score it on "
                f"test there (tunelab eval RUN --file {cfg.data.test})"
            )
    files = write_outputs(
        cfg,
        ostudy,
        study_dir,
        name,
        _safe_url(url),
        trials,
        record_trials,
        best,
        best_test,
        names,
        objectives_of(cfg)[1],
    )
    return TuneResult(study_dir, name, record_trials, best, best_test, files)


def study_records(study, names: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every trial as a plain record, and the best trial(s) (the Pareto front for several)."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    recs = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("surplus"):
            continue
        dur = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        inter = t.intermediate_values
        rec = {
            "number": t.number,
            "state": t.state.name.lower(),
            "params": dict(t.params),
            "values": dict(zip(names, t.values)) if t.values is not None else None,
            "duration_s": round(dur, 3) if dur is not None else None,
            "run_dir": t.user_attrs.get("run_dir"),
            "steps": t.user_attrs.get("steps"),
            "intermediate": {str(k): v for k, v in sorted(inter.items())},
            "retry_of": RetryHeartbeatStaleTrialCallback.retried_trial_number(t)
            if t.user_attrs.get("retry_of") is None
            else t.user_attrs["retry_of"],
        }
        if t.user_attrs.get("error"):
            rec["error"] = t.user_attrs["error"]
        if t.state == TrialState.PRUNED and inter:
            step = max(inter)
            rec["pruned"] = {"step": step, "value": inter[step]}
        recs.append(rec)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        best_numbers: set[int] = set()
    elif len(names) == 1:
        best_numbers = {study.best_trial.number}
    else:
        best_numbers = {t.number for t in study.best_trials}
    best = [r for r in recs if r["number"] in best_numbers]
    return recs, best
