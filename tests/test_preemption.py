"""Runs stopped from outside (SIGINT, SIGTERM, SIGUSR1) and runs that race for one directory."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import tiny_config
from tunelab import rundir
from tunelab.errors import RunDirError
from tunelab.utils.io import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
EXIT = {"SIGINT": 130, "SIGTERM": 143, "SIGUSR1": 143}


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TUNELAB_PROBE_CACHE": "0", **extra}


def _write(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(json.loads(json.dumps(cfg, default=str))))
    return path


_launched = iter(range(10**6))


def _train(cfg_path: Path, *extra: str, env=None, launcher=()) -> subprocess.Popen:
    """`tunelab train CFG ...` in its own process; its stderr goes to a file (see _stderr)."""
    cmd = [*launcher] or [sys.executable, "-m", "tunelab.cli"]
    err = cfg_path.parent / f"{cfg_path.stem}.{next(_launched)}.err"
    with open(err, "w") as fh:
        proc = subprocess.Popen(
            [*cmd, "train", str(cfg_path), *extra],
            stdout=subprocess.DEVNULL,
            stderr=fh,
            env=env or _env(),
        )
    proc.err_path = err  # type: ignore[attr-defined]
    return proc


def _stderr(proc: subprocess.Popen) -> str:
    return proc.err_path.read_text()  # type: ignore[attr-defined]


def _wait_for_step(run: Path, step: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before step {step}: {_stderr(proc)[-2000:]}")
        metrics = run / "metrics.jsonl"
        if metrics.is_file() and any(r.get("step", 0) >= step for r in read_jsonl(metrics)):
            return
        time.sleep(0.02)
    raise AssertionError(f"no step {step} within {timeout} s")


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "model" / "model.safetensors"))


def _same_weights(a: Path, b: Path) -> None:
    import torch

    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "weights differ"


@pytest.fixture(scope="module")
def long_config(tiny_bert, tmp_path_factory):
    """A full fine-tuning config long enough to be signalled mid-run (a checkpoint each 250)."""
    from helpers import keyword_files

    tmp = tmp_path_factory.mktemp("preempt")
    data = keyword_files(tmp / "data")
    cfg = tiny_config(
        tiny_bert,
        data,
        tmp / "runs",
        **{
            "training.max_steps": 1200,
            "training.eval_every": 600,
            "training.save_every": 250,
            "training.log_every": 1,
            "training.batch_size": 8,
        },
    )
    return cfg, tmp


@pytest.fixture(scope="module")
def reference(long_config):
    cfg, tmp = long_config
    cfg = {**cfg, "output": {"dir": str(tmp / "runs"), "name": "reference"}}
    proc = _train(_write(cfg, tmp / "reference.yaml"))
    assert proc.wait(timeout=600) == 0, _stderr(proc)
    return tmp / "runs" / "reference"


# -- one directory, one process -------------------------------------------------------------------
def _race(path: str, barrier, results) -> None:
    barrier.wait()
    try:
        c = rundir.claim(path)
    except RunDirError as e:
        results.put(("refused", str(e)))
        return
    time.sleep(0.05)
    results.put(("claimed", ""))
    c.release()


def test_two_processes_claiming_one_directory_at_once_one_wins(tmp_path):
    ctx = mp.get_context("fork")
    for i in range(40):
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [
            ctx.Process(target=_race, args=(str(tmp_path / f"r{i}"), barrier, results))
            for _ in range(2)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        got = sorted(results.get(timeout=5) for _ in range(2))
        # both ran at once: one holds the lock while the other asks, so exactly one wins
        assert [g[0] for g in got] == ["claimed", "refused"], got
        assert "is in use by `tunelab train` (pid" in got[1][1]
        assert not rundir.lock_path(tmp_path / f"r{i}").exists()  # released and removed


def test_two_train_commands_started_together_share_nothing(tiny_bert, keyword_data, tmp_path):
    cfg = tiny_config(tiny_bert, keyword_data, tmp_path / "runs", **{"training.max_steps": 40})
    path = _write(cfg, tmp_path / "cfg.yaml")
    refusals = []
    for attempt in range(3):
        name = f"run{attempt}"
        procs = [_train(path, f"output.name={name}") for _ in range(2)]
        codes = [p.wait(timeout=600) for p in procs]
        assert sorted(codes) == [0, 2], [_stderr(p) for p in procs]
        loser = _stderr(procs[codes.index(2)])
        assert "is in use by `tunelab train`" in loser or "already exists" in loser, loser
        refusals.append(loser)
        run = tmp_path / "runs" / name
        steps = [r["step"] for r in read_jsonl(run / "metrics.jsonl") if r["type"] == "train"]
        assert steps == sorted(set(steps)) and steps[-1] == 40  # one writer: no line twice
        assert json.loads((run / "run.json").read_text())["status"] == "completed"
    # started together, they overlapped: the lock (not a finished directory) refused the second
    assert any("is in use by `tunelab train`" in r for r in refusals), refusals


def test_a_lock_left_behind_is_taken_over_here_and_reported_for_another_host(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = rundir.lock_path(tmp_path / "run")
    here = {"host": socket.gethostname(), "pid": dead.pid, "started": 0, "command": "x"}
    lock.write_text(json.dumps(here))
    with rundir.claim(tmp_path / "run") as c:
        assert "took over the lock" in c.note and f"pid {dead.pid}" in c.note
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    lock.write_text(json.dumps({**here, "host": "elsewhere", "pid": 1}))
    with pytest.raises(RunDirError, match="another host: tunelab cannot tell"):
        rundir.claim(tmp_path / "run")
    os.environ[rundir.BREAK_LOCK_ENV] = "1"
    try:
        with rundir.claim(tmp_path / "run") as c:
            assert "elsewhere" in c.note
    finally:
        del os.environ[rundir.BREAK_LOCK_ENV]


def test_a_running_status_without_its_process_reads_as_interrupted(
    tiny_bert, keyword_data, tmp_path
):
    import tunelab
    from tunelab.cli import main
    from tunelab.reporting.report import build_report

    res = tunelab.train(tiny_config(tiny_bert, keyword_data, tmp_path / "runs"))
    info = json.loads((res.run_dir / "run.json").read_text())
    assert info["process"]["pid"] == os.getpid()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    info.update(status="running", process={**info["process"], "pid": dead.pid})
    (res.run_dir / "run.json").write_text(json.dumps(info))
    assert rundir.run_status(info) == "interrupted (process gone)"
    assert main(["eval", str(res.run_dir)]) == 2
    html = build_report([res.run_dir], tmp_path / "r.html").read_text()
    assert "interrupted (process gone)" in html


# -- signals --------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGUSR1"])
def test_a_signal_stops_after_the_step_with_its_checkpoint_and_resume_is_exact(
    sig, long_config, reference
):
    cfg, tmp = long_config
    cfg = {**cfg, "output": {"dir": str(tmp / "runs"), "name": f"stopped-{sig}"}}
    path = _write(cfg, tmp / f"{sig}.yaml")
    run = tmp / "runs" / f"stopped-{sig}"
    at = random.Random(sig).randint(8, 700)  # a seeded step, between and across checkpoints
    proc = _train(path)
    _wait_for_step(run, at, proc)
    proc.send_signal(getattr(signal, sig))
    assert proc.wait(timeout=120) == EXIT[sig], _stderr(proc)[-2000:]
    info = json.loads((run / "run.json").read_text())
    step = info["ended"]["step"]
    assert info["status"] == "interrupted" and info["ended"]["signal"] == sig
    assert at <= step < 1200 and info["ended"]["checkpoint"] is True
    assert (run / "checkpoints" / f"step-{step:07d}" / "COMPLETE").is_file()
    stops = [r for r in read_jsonl(run / "metrics.jsonl") if r["type"] == "stop"]
    assert stops == [{"type": "stop", "step": step, "signal": sig, "checkpoint": True}]
    assert f"interrupted by {sig} after step {step}" in _stderr(proc)
    again = _train(path, "--resume")
    assert again.wait(timeout=600) == 0, _stderr(again)
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    _same_weights(run, reference)


def test_a_second_sigint_during_the_stop_checkpoint_leaves_the_previous_one(long_config):
    cfg, tmp = long_config
    cfg = {**cfg, "output": {"dir": str(tmp / "runs"), "name": "twice"}}
    path = _write(cfg, tmp / "twice.yaml")
    run = tmp / "runs" / "twice"
    proc = _train(path, env=_env(TUNELAB_FAULT="pause:checkpoint:weights:stop"))
    _wait_for_step(run, 257, proc)  # past the checkpoint of step 250
    proc.send_signal(signal.SIGINT)
    end = time.monotonic() + 120
    while "tunelab-fault: paused" not in _stderr(proc) and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(1.5)  # a repeat within a second counts as the same request
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert time.monotonic() - t0 < 10  # at once, not after the paused write
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step"))
    assert ckpts == ["step-0000250"], ckpts  # no partial step-N, and no temporary folder left
    assert not list((run / "checkpoints").glob(".*"))
    assert (run / "checkpoints" / "step-0000250" / "COMPLETE").is_file()
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "interrupted" and info["ended"]["checkpoint"] is False


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids = (task / "children").read_text().split()
        out += [int(k) for k in kids]
    return out


def _workers(launcher_pid: int, n: int = 2, timeout: float = 120) -> list[int]:
    """The training processes under `accelerate launch` (its children's children, or its own)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = [c for p in [launcher_pid, *_children(launcher_pid)] for c in _children(p)]
        found = found or _children(launcher_pid)
        if len(found) >= n:
            return found
        time.sleep(0.1)
    raise AssertionError("no workers")


LAUNCH = [
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--config_file",
    str(ROOT / "configs/accelerate/two_processes.yaml"),
    "-m",
    "tunelab.cli",
]


@pytest.fixture(scope="module")
def reference_two(long_config):
    cfg, tmp = long_config
    env = _env(MASTER_PORT=str(29500 + os.getpid() % 1000))
    ref_cfg = {**cfg, "output": {"dir": str(tmp / "runs"), "name": "ref2"}}
    ref = _train(_write(ref_cfg, tmp / "ref2.yaml"), env=env, launcher=LAUNCH)
    assert ref.wait(timeout=900) == 0, _stderr(ref)[-3000:]
    return tmp / "runs" / "ref2"


@pytest.mark.distributed
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGUSR1"])
def test_two_processes_stop_at_one_step_and_resume_exactly(sig, long_config, reference_two):
    cfg, tmp = long_config
    env = _env(MASTER_PORT=str(29600 + os.getpid() % 1000))
    stop_cfg = {**cfg, "output": {"dir": str(tmp / "runs"), "name": f"two-{sig}"}}
    path = _write(stop_cfg, tmp / f"two-{sig}.yaml")
    run = tmp / "runs" / f"two-{sig}"
    proc = _train(path, env=env, launcher=LAUNCH)
    workers = _workers(proc.pid)
    _wait_for_step(run, random.Random(f"two-{sig}").randint(8, 500), proc)
    os.kill(workers[-1], getattr(signal, sig))  # one rank only, as a pre-emption notice may come
    assert proc.wait(timeout=300) != 0
    info = json.loads((run / "run.json").read_text())
    step = info["ended"]["step"]
    assert info["status"] == "interrupted" and info["ended"]["signal"] == sig
    assert (run / "checkpoints" / f"step-{step:07d}" / "COMPLETE").is_file()
    # every rank stopped at that step: the one checkpoint holds both ranks' RNG states
    rng = json.loads((run / "checkpoints" / f"step-{step:07d}" / "rng.json").read_text())
    assert len(rng) == 2
    again = _train(path, "--resume", env=env, launcher=LAUNCH)
    assert again.wait(timeout=900) == 0, _stderr(again)[-3000:]
    _same_weights(run, reference_two)


def test_compare_stopped_by_a_signal_keeps_its_runs_and_resumes(tiny_bert, keyword_data, tmp_path):
    over = {"training.max_steps": 1200, "training.log_every": 1, "training.save_every": 400}
    path = _write(
        tiny_config(tiny_bert, keyword_data, tmp_path / "runs", **over), tmp_path / "c.yaml"
    )
    out = tmp_path / "cmp"
    cmd = [
        sys.executable,
        "-m",
        "tunelab.cli",
        "compare",
        str(path),
        "--methods",
        "full,bitfit",
        "--output",
        str(out),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    end = time.monotonic() + 240
    while not (out / "full" / "metrics.jsonl").is_file() and time.monotonic() < end:
        time.sleep(0.05)
    while time.monotonic() < end:  # mid-run
        if any(r.get("step", 0) >= 30 for r in read_jsonl(out / "full" / "metrics.jsonl")):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # to compare only: it passes the signal to its run
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "--resume" in err.decode()
    info = json.loads((out / "full" / "run.json").read_text())
    assert info["status"] == "interrupted" and info["ended"]["signal"] == "SIGTERM"
    assert not (out / "bitfit").exists()
    again = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=_env())
    assert again.returncode == 0, again.stderr
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["full", "bitfit"] and all("error" not in r for r in rows)
    assert json.loads((out / "full" / "run.json").read_text())["status"] == "completed"
