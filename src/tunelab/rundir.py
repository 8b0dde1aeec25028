"""The run directory: every file name in it, and the one place that reads and writes them.

A run directory is the contract between training, evaluation and reporting::

    RUN/config.yaml          the resolved config (every default filled in)
    RUN/run.json             status, model, task, method, parameters, summary, final metrics
    RUN/metrics.jsonl        one row per log/eval event
    RUN/trace-rankN.jsonl    source rows of every step (training.trace_examples)
    RUN/eval/NAME.json       metrics of one evaluation (validation, test, probe-*, suite-*)
    RUN/predictions/NAME.jsonl  per-example predictions of that evaluation
    RUN/model/               the trained model in the method's own format, with its tokenizer
    RUN/merged/              ``tunelab merge``'s plain transformers folder
    RUN/checkpoints/step-N/  resumable checkpoints
    RUN/trackers/            TensorBoard events and W&B offline files (``training.report_to``)
    RUN/reference_logps.json a preference run's precomputed reference log-probabilities
    ROOT/pipeline.json       a staged run's stages;  ROOT/adapters.json  per-task adapters
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tunelab.errors import RunDirError
from tunelab.utils.io import (
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_yaml,
    read_jsonl,
)

CONFIG = "config.yaml"
RUN_INFO = "run.json"
METRICS = "metrics.jsonl"
EVAL = "eval"
PREDICTIONS = "predictions"
MODEL = "model"
MERGED = "merged"
CHECKPOINTS = "checkpoints"
TRACKERS = "trackers"
PIPELINE = "pipeline.json"
ADAPTERS = "adapters.json"
REFERENCE_LOGPS = "reference_logps.json"
#: prefixes of the tokenizer's files in a saved model folder (copied next to merged weights)
#: a `tunelab tune` study folder: its record, the best trial's config, Optuna's plots
STUDY_JSON = "study.json"
STUDY_BEST = "best.yaml"
STUDY_PLOTS = "plots"
TOKENIZER_FILES = ("tokenizer", "special_tokens", "vocab", "merges", "chat_template")


def read_reference_logps(run_dir: Path) -> dict[str, Any] | None:
    """A preference run's precomputed reference log-probabilities (None when not written)."""
    return read_json(Path(run_dir) / REFERENCE_LOGPS)


def write_reference_logps(run_dir: Path, data: dict[str, Any]) -> None:
    atomic_write_json(Path(run_dir) / REFERENCE_LOGPS, data)


def trace_file(run_dir: Path, rank: int) -> Path:
    return Path(run_dir) / f"trace-rank{rank}.jsonl"


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / RUN_INFO).is_file()


def read_info(run_dir: str | Path) -> dict[str, Any]:
    """``run.json`` of a run directory (a clear error when there is none)."""
    path = Path(run_dir) / RUN_INFO
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not a tunelab run directory (no run.json)")
    return json.loads(path.read_text(encoding="utf-8"))


def write_info(run_dir: Path, info: dict[str, Any]) -> None:
    atomic_write_json(Path(run_dir) / RUN_INFO, info)


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    atomic_write_yaml(Path(run_dir) / CONFIG, config)


def read_config_text(run_dir: Path) -> str:
    path = Path(run_dir) / CONFIG
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS
    return read_jsonl(path) if path.is_file() else []


def eval_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / EVAL / f"{name}.json"


def predictions_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / PREDICTIONS / f"{name}.jsonl"


def write_eval(
    run_dir: Path, name: str, metrics: dict, rows: list[dict] | None, save_predictions: bool = True
) -> Path:
    """``eval/NAME.json`` (and ``predictions/NAME.jsonl`` when asked); returns the JSON path."""
    path = atomic_write_json(eval_path(run_dir, name), metrics)
    if save_predictions and rows is not None:
        atomic_write_jsonl(predictions_path(run_dir, name), rows)
    return path


def read_eval(run_dir: Path, name: str) -> dict[str, Any] | None:
    path = eval_path(run_dir, name)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_predictions(run_dir: Path, name: str, limit: int | None = None) -> list[dict[str, Any]]:
    path = predictions_path(run_dir, name)
    if not path.is_file():
        return []
    rows = read_jsonl(path)
    return rows[:limit] if limit is not None else rows


def suite_results(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Every ``eval/suite-NAME.json`` of a run, by suite name."""
    return {
        p.stem.removeprefix("suite-"): json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((Path(run_dir) / EVAL).glob("suite-*.json"))
    }


def truncate_logs(run_dir: Path, step: int) -> None:
    """On resume, drop log rows of steps after the checkpoint (they are about to be redone)."""
    for path in [Path(run_dir) / METRICS, *Path(run_dir).glob("trace-rank*.jsonl")]:
        if path.is_file():
            rows = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
            atomic_write_jsonl(path, rows)


def folder_mb(folder: Path) -> float:
    """Size of every file under ``folder``, in MB."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 1e6


def copy_tokenizer_files(src: Path, dst: Path) -> None:
    """Copy a saved model folder's tokenizer files into another folder."""
    for f in Path(src).iterdir():
        if f.name.startswith(TOKENIZER_FILES):
            shutil.copy2(f, Path(dst) / f.name)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON index file of the run layout (``pipeline.json``, ``adapters.json``), or None."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# -- who holds a run directory ------------------------------------------------------------------
#: set to 1 to take over a lock that a process on another host holds (tunelab cannot tell
#: whether a process on another machine still runs)
BREAK_LOCK_ENV = "TUNELAB_BREAK_LOCK"


def lock_path(run_dir: Path) -> Path:
    """The lock file of a run directory: a hidden sibling, so replacing the directory itself
    (overwrite, an atomic rename) never removes the lock."""
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.lock"


def this_process() -> dict[str, Any]:
    import os
    import socket
    import time

    return {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}


def pid_alive(pid: int) -> bool:
    """Whether a process of this host with that pid exists."""
    import os

    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _describe(holder: dict[str, Any]) -> str:
    import time

    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    what = holder.get("command", "tunelab")
    return f"`{what}` (pid {holder.get('pid')} on {holder.get('host')}, since {started})"


class Claim:
    """An exclusive claim on a run directory (an OS file lock on :func:`lock_path`), released
    by :meth:`release`, or by the OS when the process ends however it ends."""

    def __init__(self, path: Path, fd: int, note: str | None):
        self.path, self.fd, self.note = path, fd, note

    def release(self) -> None:
        import os

        if self.fd < 0:
            return
        try:  # unlink only our own file: a newer holder may have replaced a stale one
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim(run_dir: str | Path, command: str = "tunelab train") -> Claim:
    """Take the run directory for this process, or refuse with a message naming the holder.

    The lock is ``flock`` on a hidden sibling file holding host, pid and start time: the OS
    drops it when its process ends. A file left by a process of this host that no longer runs
    (killed with -9) is taken over, with a note; one naming another host is reported and only
    taken over with ``TUNELAB_BREAK_LOCK=1``. Written for tunelab: filelock and portalocker
    lock but do not record or judge the holder."""
    import fcntl
    import json
    import os
    import socket
    import time

    path = lock_path(Path(run_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            for _ in range(40):  # the holder writes its name right after taking the lock
                if holder:
                    break
                time.sleep(0.025)
                holder = _read_holder(fd)
            os.close(fd)
            raise RunDirError(
                f"{run_dir} is in use by {_describe(holder) if holder else 'another process'}; "
                "wait for it to end, or choose another output.name"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # released and unlinked between our open and our lock: try again
            os.close(fd)
            continue
        note = None
        old = _read_holder(fd)
        if old:
            here = old.get("host") == socket.gethostname()
            if here and old.get("pid") != os.getpid() and pid_alive(old.get("pid", -1)):
                os.close(fd)  # a live holder on a filesystem without working flock
                raise RunDirError(f"{run_dir} is in use by {_describe(old)}")
            if not here and os.environ.get(BREAK_LOCK_ENV) != "1":
                os.close(fd)
                raise RunDirError(
                    f"{run_dir} is locked by {_describe(old)}, another host: tunelab cannot "
                    f"tell whether it still runs there. If it does not, set {BREAK_LOCK_ENV}=1"
                )
            note = f"{run_dir}: took over the lock of {_describe(old)}, which no longer runs"
        me = {**this_process(), "command": command}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        return Claim(path, fd, note)
    raise RunDirError(f"{run_dir}: could not take its lock ({path})")


def _read_holder(fd: int) -> dict[str, Any] | None:
    import json
    import os

    try:
        data = os.pread(fd, 4096, 0)
        return json.loads(data) if data.strip() else None
    except (OSError, ValueError):
        return None


def run_status(info: dict[str, Any]) -> str:
    """A run's status as users should read it: ``running`` only while its process lives
    (a run whose process is gone without a word is ``interrupted (process gone)``)."""
    import socket

    status = info.get("status", "unknown")
    proc = info.get("process") or {}
    here = proc.get("host") == socket.gethostname()
    if status == "running" and here and not pid_alive(proc.get("pid", -1)):
        return "interrupted (process gone)"
    return status


def is_study_dir(path: str | Path) -> bool:
    """Whether ``path`` is a `tunelab tune` study folder (it holds ``study.json``)."""
    return (Path(path) / STUDY_JSON).is_file()


def read_study(path: str | Path) -> dict[str, Any]:
    """A study folder's ``study.json``."""
    return json.loads((Path(path) / STUDY_JSON).read_text(encoding="utf-8"))
