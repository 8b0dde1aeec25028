"""`tunelab tune` as separate processes: kill -9 and continue, and two workers on one
PostgreSQL study (a real server, started here; skipped where PostgreSQL is not installed)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from helpers import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def _pg_bin() -> Path:
    """Debian's PostgreSQL server binaries (the newest version installed), or TUNELAB_PG_BIN."""
    if os.environ.get("TUNELAB_PG_BIN"):
        return Path(os.environ["TUNELAB_PG_BIN"])
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()


def tune_cmd(path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tunelab.cli", "tune", str(path), *args]


def env() -> dict[str, str]:
    src = str(ROOT / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


def write_study_config(tmp_path: Path, model: Path, data: dict, **training) -> Path:
    cfg = tiny_config(
        model, data, tmp_path / "runs", **{f"training.{k}": v for k, v in training.items()}
    )
    cfg["output"]["name"] = "s"
    cfg["search"] = {
        "space": {"training.lr": {"float": [1e-3, 3e-2], "log": True}},
        "seed": 1,
        "pruner": "none",
        "heartbeat_s": 1,
    }
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_interrupted_during_a_trial_then_continue(tiny_bert, keyword_data, tmp_path, sig):
    """Trial 1 is killed (or interrupted) after its first checkpoint; the same command again
    keeps trial 0, re-runs trial 1 from its checkpoint (in its own run directory) and reaches
    3 trials."""
    from tunelab.training.checkpoint import MARKER

    path = write_study_config(tmp_path, tiny_bert, keyword_data, max_steps=40, eval_every=8)
    study = tmp_path / "runs" / "s"
    proc = subprocess.Popen(
        tune_cmd(path, "--trials", "3"), env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 600
        while not list((study / "trial-0001" / "checkpoints").glob(f"step-*/{MARKER}")):
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        proc.send_signal(sig)
        proc.wait(timeout=300)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode != 0
    assert not (study / "study.json").exists()  # it never got to the end
    out = subprocess.run(
        tune_cmd(path, "--trials", "3"), env=env(), capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resumed from" in out.stderr
    rec = json.loads((study / "study.json").read_text())
    states = {t["number"]: t["state"] for t in rec["trials"]}
    assert sorted(s for s in states.values()) == ["complete", "complete", "complete", "fail"]
    assert states[0] == "complete" and states[1] == "fail"  # the killed one, re-run as a retry
    retry = next(t for t in rec["trials"] if t["retry_of"] == 1)
    assert retry["state"] == "complete" and retry["run_dir"] == "trial-0001"
    assert retry["params"] == rec["trials"][1]["params"]
    fresh = next(t for t in rec["trials"] if t["number"] > 1 and t["retry_of"] is None)
    assert sorted(p.name for p in study.glob("trial-*")) == [
        "trial-0000",
        "trial-0001",
        f"trial-{fresh['number']:04d}",
    ]
    info = json.loads((study / "trial-0001" / "run.json").read_text())
    assert info["status"] == "completed" and info["summary"]["steps"] == 40


# -- PostgreSQL ------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server on 127.0.0.1 (run as the `postgres` user under root)."""
    pytest.importorskip("psycopg2")
    if not (PG_BIN / "initdb").is_file():
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN}")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="tunelab-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server")
        os.chown(folder, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()

    def run(*cmd: str) -> None:
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=120)

    try:
        run(str(PG_BIN / "initdb"), "-D", str(data), "-U", "tunelab", "--auth=trust", "-E", "UTF8")
        opts = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
        run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            opts,
            "-l",
            str(folder / "log"),
            "-w",
            "start",
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {getattr(e, 'stderr', b'')!r}")
    try:
        run(
            str(PG_BIN / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "tunelab",
            "optuna",
        )
        yield f"postgresql://tunelab@127.0.0.1:{port}/optuna"
    finally:
        run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_on_one_postgresql_study(tiny_bert, keyword_data, tmp_path, postgres_url):
    """Two `tunelab tune` processes, one study: 4 trials in all, none run twice, and both
    record the same best trial."""
    path = write_study_config(tmp_path, tiny_bert, keyword_data, max_steps=16, eval_every=8)
    workers = [
        subprocess.Popen(
            tune_cmd(
                path,
                "--trials",
                "4",
                "--study",
                "pg",
                "--storage",
                postgres_url,
                "--output",
                str(tmp_path / w),
            ),
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in ("a", "b")
    ]
    outs = [w.communicate(timeout=900) for w in workers]
    for w, (_, err) in zip(workers, outs):
        assert w.returncode == 0, err[-3000:]
    recs = [json.loads((tmp_path / w / "study.json").read_text()) for w in ("a", "b")]
    ran = {w: sorted(p.name for p in (tmp_path / w).glob("trial-*")) for w in ("a", "b")}
    assert ran["a"] and ran["b"], ran  # both workers trained trials
    assert not set(ran["a"]) & set(ran["b"])  # none twice
    assert len(ran["a"]) + len(ran["b"]) == 4
    for rec in recs:
        assert rec["counts"]["complete"] == 4 and rec["storage"].startswith("postgresql")
        assert len({t["number"] for t in rec["trials"]}) == 4
    best = [next(t for t in r["trials"] if t["number"] == r["best"][0]) for r in recs]
    assert best[0] == best[1]
    assert best[0]["values"]["accuracy"] == max(t["values"]["accuracy"] for t in recs[0]["trials"])
