"""Experiment trackers (``training.report_to``): what each tracker got, read back with its own
reader (TensorBoard's EventAccumulator, MlflowClient on SQLite, W&B's offline run file, Trackio's
SQLite storage) and compared with metrics.jsonl."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import tunelab
from helpers import keyword_files, tiny_config
from tunelab.errors import ConfigError
from tunelab.training import trackers
from tunelab.utils.io import read_jsonl

ALL = ["tensorboard", "mlflow", "wandb", "trackio"]
if not all(importlib.util.find_spec(p) for p in ALL):  # found, not imported: they import slowly
    pytest.skip("needs tensorboard, mlflow, wandb and trackio", allow_module_level=True)


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_"))}
    return {
        **env,
        "OMP_NUM_THREADS": "1",
        "TUNELAB_PROBE_CACHE": "0",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "TRACKIO_DIR": str(tmp / "trackio"),
        **extra,
    }


def _cli_train(tmp: Path, cfg: dict, *extra: str, env: dict | None = None):
    """`tunelab train CFG` as a user runs it, in ``tmp`` (MLflow's artifacts go to ./mlruns)."""
    path = tmp / f"config-{len(list(tmp.glob('config-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(cfg, default=str))))
    return subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "train", str(path), *extra],
        cwd=tmp,
        env=env or _env(tmp),
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def tracked(tiny_bert, tmp_path_factory):
    """One run logged to all four trackers, with a group and a run name of its own."""
    tmp = tmp_path_factory.mktemp("tracked")
    data = keyword_files(tmp / "data")
    cfg = tiny_config(
        tiny_bert,
        data,
        tmp / "runs",
        **{
            "training.max_steps": 40,
            "training.eval_every": 20,
            "training.report_to": ALL,
            "training.tracker_project": "sweep",
            "training.tracker_group": "study-1",
            "training.tracker_run_name": "trial-3",
        },
    )
    proc = _cli_train(tmp, cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp / "runs" / "run"
    return tmp, run, read_jsonl(run / "metrics.jsonl")


def _rows(rows: list[dict], kind: str, split: str | None = None) -> list[dict]:
    return [r for r in rows if r["type"] == kind and (split is None or r.get("split") == split)]


def test_report_to_is_a_validated_list():
    over = ["training.report_to=tensorboard,mlflow"]
    assert tunelab.load_config({}, over).training.report_to == ["tensorboard", "mlflow"]
    over = ["training.report_to=[wandb, trackio, wandb]"]
    assert tunelab.load_config({}, over).training.report_to == ["wandb", "trackio"]
    assert tunelab.load_config({}, ["training.report_to=none"]).training.report_to == []
    assert tunelab.load_config({}).training.report_to == []
    with pytest.raises(ConfigError, match=r"training\.report_to.*'tensorboard', 'mlflow'"):
        tunelab.load_config({}, ["training.report_to=[tensorbord]"])


def test_row_values_name_every_number_of_a_row():
    row = {"type": "eval", "split": "validation", "step": 20, "accuracy": 0.5, "n": 48}
    assert trackers.row_values(row) == {"validation/accuracy": 0.5, "validation/n": 48}
    row = {"type": "train", "step": 10, "loss": 0.7, "mix": {"a": 0.25}, "note": "x"}
    assert trackers.row_values(row) == {"train/loss": 0.7, "train/mix/a": 0.25}


def test_a_missing_tracker_package_is_named_before_anything_runs(
    tiny_bert, keyword_data, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if it were not installed
    cfg = tiny_config(
        tiny_bert, keyword_data, tmp_path / "runs", **{"training.report_to": ["wandb"]}
    )
    with pytest.raises(ConfigError, match=r"training\.report_to: wandb not installed; pip install"):
        tunelab.train(cfg)
    assert not (tmp_path / "runs").exists()


def test_an_accelerate_without_the_integration_is_named(monkeypatch):
    from accelerate import tracking

    monkeypatch.delitem(tracking.LOGGER_TYPE_TO_CLASS, "trackio")
    with pytest.raises(ConfigError, match="has no trackio integration; pip install -U accelerate"):
        trackers.check_installed(["tensorboard", "trackio"])
    trackers.check_installed(["tensorboard"])


def test_wandb_is_offline_without_credentials(tmp_path, monkeypatch):
    for key in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert trackers._wandb_mode() == {"mode": "offline"}
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert trackers._wandb_mode() == {}


def test_tensorboard_has_every_row_and_the_config(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    _, run, rows = tracked
    ea = EventAccumulator(str(run / "trackers" / "sweep"))
    ea.Reload()
    train = _rows(rows, "train")
    assert [r["step"] for r in train] == [10, 20, 30, 40]
    got = [(e.step, e.value) for e in ea.Scalars("train/loss")]
    assert got == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in train]
    for key in ("lr", "examples_per_s", "grad_norm"):
        assert [e.value for e in ea.Scalars(f"train/{key}")] == [
            pytest.approx(r[key], rel=1e-6) for r in train
        ]
    evals = _rows(rows, "eval", "validation")
    got = [(e.step, e.value) for e in ea.Scalars("validation/accuracy")]
    assert got == [(r["step"], pytest.approx(r["accuracy"])) for r in evals] and len(got) == 2
    before = _rows(rows, "eval", "validation_before")[0]
    assert [(e.step, e.value) for e in ea.Scalars("validation_before/accuracy")] == [
        (0, pytest.approx(before["accuracy"]))
    ]
    final = json.loads((run / "eval" / "validation.json").read_text())
    assert ea.Scalars("final/validation/accuracy")[-1].value == pytest.approx(final["accuracy"])
    # the resolved config, flattened, as TensorBoard hyperparameters (Accelerate's add_hparams)
    (sub,) = [p for p in (run / "trackers" / "sweep").iterdir() if list(p.glob("events.*"))]
    hp = EventAccumulator(str(sub))
    hp.Reload()
    content = hp.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["training.lr"].number_value == pytest.approx(5e-3)
    assert hparams["method"].string_value == "full"


def test_mlflow_has_every_row_the_params_and_the_model(tracked):
    from mlflow.tracking import MlflowClient

    tmp, run, rows = tracked
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    exp = client.get_experiment_by_name("sweep")
    (mrun,) = client.search_runs([exp.experiment_id])
    info = json.loads((run / "run.json").read_text())
    assert info["trackers"]["mlflow_run_id"] == mrun.info.run_id
    assert mrun.info.run_name == "trial-3" and mrun.info.status == "FINISHED"
    assert mrun.data.tags["tunelab.group"] == "study-1"
    assert mrun.data.params["training.lr"] == "0.005" and mrun.data.params["method"] == "full"
    history = client.get_metric_history(mrun.info.run_id, "train/loss")
    train = _rows(rows, "train")
    assert [(m.step, m.value) for m in history] == [
        (r["step"], pytest.approx(r["loss"])) for r in train
    ]
    evals = _rows(rows, "eval", "validation")
    history = client.get_metric_history(mrun.info.run_id, "validation/f1_macro")
    assert [(m.step, m.value) for m in history] == [
        (r["step"], pytest.approx(r["f1_macro"])) for r in evals
    ]
    final = json.loads((run / "eval" / "validation.json").read_text())
    assert mrun.data.metrics["final/validation/accuracy"] == pytest.approx(final["accuracy"])
    files = {a.path: a.file_size for a in client.list_artifacts(mrun.info.run_id, "model")}
    local = (run / "model" / "model.safetensors").stat().st_size
    assert files["model/model.safetensors"] == local and "model/config.json" in files


def _wandb_records(path: str) -> list:
    """Every record of an offline ``run-ID.wandb`` file, parsed with W&B's own protobuf schema.

    wandb 0.31 has no Python reader of these files any more (the Go core reads them), so the
    framing is read here: LevelDB's log format (32 KiB blocks, 7-byte record headers
    crc32/length/type, FULL=1 FIRST=2 MIDDLE=3 LAST=4) after W&B's 7-byte ``:W&B`` header."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B"
    pos, buf, out = 7, b"", []
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            out.append(pb.Record.FromString(buf))
            buf = b""
    return out


def test_wandb_offline_run_has_every_row_and_the_config(tracked):
    _, run, rows = tracked
    info = json.loads((run / "run.json").read_text())
    run_id = info["trackers"]["wandb_run_id"]
    (path,) = glob.glob(str(run / "trackers" / "wandb" / "offline-run-*" / f"run-{run_id}.wandb"))
    history, config, meta = [], {}, None
    for rec in _wandb_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                            for i in rec.history.item})  # fmt: skip
        elif kind == "config":
            config.update({i.key: json.loads(i.value_json) for i in rec.config.update})
        elif kind == "run":
            meta = rec.run
    assert meta.project == "sweep" and meta.display_name == "trial-3"
    assert meta.run_group == "study-1"
    assert config["training.lr"] == 5e-3 and config["training.max_steps"] == 40
    by_step = {h["_step"]: h for h in history}
    for r in _rows(rows, "train"):
        assert by_step[r["step"]]["train/loss"] == pytest.approx(r["loss"])
    for r in _rows(rows, "eval", "validation"):
        assert by_step[r["step"]]["validation/accuracy"] == pytest.approx(r["accuracy"])


def test_trackio_has_every_row(tracked):
    tmp, _, rows = tracked
    code = (
        "import json; from trackio.sqlite_storage import SQLiteStorage as S; "
        "print(json.dumps([S.get_runs('sweep'), S.get_logs('sweep', 'trial-3')]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=_env(tmp), capture_output=True, text=True, check=True
    )
    runs, logs = json.loads(out.stdout.strip().splitlines()[-1])
    assert runs == ["trial-3"]
    got = [(x["step"], x["train/loss"]) for x in logs if "train/loss" in x]
    assert got == [(r["step"], pytest.approx(r["loss"])) for r in _rows(rows, "train")]


def test_a_killed_and_resumed_run_continues_its_tracker_runs(tiny_bert, tmp_path):
    """SIGKILL at step 35 (last checkpoint: 20), then resume: the same MLflow run goes on and
    TensorBoard drops the steps that were redone, so each step holds what metrics.jsonl says."""
    data = keyword_files(tmp_path / "data")
    cfg = tiny_config(
        tiny_bert,
        data,
        tmp_path / "runs",
        **{
            "training.max_steps": 40,
            "training.eval_every": 20,
            "training.log_every": 5,
            "training.report_to": ["tensorboard", "mlflow"],
        },
    )
    killed = _cli_train(tmp_path, cfg, env=_env(tmp_path, TUNELAB_FAULT="kill:step:35"))
    assert killed.returncode == -9, killed.stderr[-2000:]
    run = tmp_path / "runs" / "run"
    first_id = json.loads((run / "run.json").read_text())["trackers"]["mlflow_run_id"]
    resumed = _cli_train(tmp_path, cfg, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    info = json.loads((run / "run.json").read_text())
    assert info["trackers"]["mlflow_run_id"] == first_id
    train = _rows(read_jsonl(run / "metrics.jsonl"), "train")
    assert [r["step"] for r in train] == list(range(5, 41, 5))

    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run / "trackers" / "tunelab"))
    ea.Reload()
    got = [(e.step, e.value) for e in ea.Scalars("train/loss")]
    assert got == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in train]

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (mrun,) = client.search_runs([client.get_experiment_by_name("tunelab").experiment_id])
    assert mrun.info.run_id == first_id and mrun.info.status == "FINISHED"
    history = client.get_metric_history(first_id, "train/loss")
    newest = {}
    for m in sorted(history, key=lambda m: m.timestamp):  # a redone step is logged again
        newest[m.step] = m.value
    assert newest == {r["step"]: pytest.approx(r["loss"]) for r in train}
    assert {m.step for m in history} == set(range(5, 41, 5))
    assert len(history) == len(train) + 2  # steps 25 and 30 ran twice: before the kill, after


def _mlflow_runs(tmp: Path, experiment: str) -> tuple:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return client, sorted(client.search_runs([exp.experiment_id]), key=lambda r: r.info.run_name)


def test_stages_are_one_tracker_run_each_in_one_group(tiny_bert, tmp_path, monkeypatch):
    from helpers import keyword_rows, write_csv

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data = keyword_files(tmp_path / "data")
    related = write_csv(tmp_path / "rel" / "train.csv", keyword_rows(96, 7))
    cfg = tiny_config(
        tiny_bert,
        data,
        tmp_path / "runs",
        method="lora",
        **{
            "training.max_steps": 20,
            "training.eval_every": 20,
            "training.report_to": ["mlflow"],
            "training.tracker_log_model": False,
            "output.name": "staged",
        },
    )
    cfg["stages"] = [{"name": "related", "data": {"train": str(related)}}, {"name": "target"}]
    tunelab.train(cfg)
    client, runs = _mlflow_runs(tmp_path, "tunelab")
    assert [r.info.run_name for r in runs] == ["1-related", "2-target"]
    assert {r.data.tags["tunelab.group"] for r in runs} == {"staged"}
    assert {r.info.status for r in runs} == {"FINISHED"}
    for r in runs:
        rows = read_jsonl(tmp_path / "runs" / "staged" / r.info.run_name / "metrics.jsonl")
        history = client.get_metric_history(r.info.run_id, "train/loss")
        assert [(m.step, m.value) for m in history] == [
            (x["step"], pytest.approx(x["loss"])) for x in _rows(rows, "train")
        ]
        assert client.list_artifacts(r.info.run_id) == []  # tracker_log_model=false


def test_probe_deltas_go_to_the_tracker(tiny_llama, tmp_path, monkeypatch):
    from helpers import gen_rows, write_jsonl

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data = {
        "train": write_jsonl(tmp_path / "d" / "train.jsonl", gen_rows(64, 0)),
        "validation": write_jsonl(tmp_path / "d" / "val.jsonl", gen_rows(16, 1)),
    }
    general = write_jsonl(
        tmp_path / "d" / "general.jsonl", [{"text": "the music and the cast of it " * 3}] * 12
    )
    cfg = tiny_config(
        tiny_llama,
        data,
        tmp_path / "runs",
        **{
            "task.type": "generation",
            "task.format": "prompt_completion",
            "training.max_steps": 20,
            "training.eval_every": 20,
            "training.lr": 1e-2,
            "training.report_to": "mlflow",
        },
    )
    cfg["probes"] = [
        {
            "name": "general",
            "data": {"validation": str(general)},
            "task": {"format": "text", "fields": {"text": "text"}},
        },
    ]
    res = tunelab.train(cfg)
    p = json.loads((res.run_dir / "run.json").read_text())["summary"]["probes"]["general"]
    _, (run,) = _mlflow_runs(tmp_path, "tunelab")
    got = run.data.metrics
    for side in ("before", "after", "delta"):
        assert got[f"probe/general/{side}/perplexity"] == pytest.approx(p[side]["perplexity"])
    assert got["final/validation/loss"] == pytest.approx(res.metrics["loss"])


def test_compare_runs_are_one_tracker_run_each_in_one_group(
    tiny_bert, keyword_data, tmp_path, monkeypatch
):
    from tunelab.cli import main

    monkeypatch.chdir(tmp_path)  # the comparison's `tunelab train` processes inherit both
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = tiny_config(
        tiny_bert,
        keyword_data,
        tmp_path / "runs",
        **{"training.max_steps": 6, "training.report_to": ["mlflow"]},
    )
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(cfg, default=str))))
    out = tmp_path / "cmp"
    assert main(["compare", str(path), "--methods", "full,full@0.02", "--output", str(out)]) == 0
    _, runs = _mlflow_runs(tmp_path, "tunelab")
    assert [r.info.run_name for r in runs] == ["full", "full-lr0.02"]
    assert {r.data.tags["tunelab.group"] for r in runs} == {"cmp"}
    assert [r.data.params["training.lr"] for r in runs] == [str(cfg["training"]["lr"]), "0.02"]


@pytest.mark.distributed
def test_two_processes_log_once(tiny_bert, keyword_data, tmp_path):
    """Under `accelerate launch` with two processes only the main one opens a tracker run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from test_distributed import launch

    cfg = tiny_config(
        tiny_bert,
        keyword_data,
        tmp_path / "runs",
        **{
            "training.max_steps": 20,
            "training.eval_every": 10,
            "training.report_to": ["tensorboard"],
        },
    )
    run = launch(cfg, tmp_path, "dist")
    folder = run / "trackers" / "tunelab"
    assert len(list(folder.glob("events.*"))) == 1  # one writer, not two
    ea = EventAccumulator(str(folder))
    ea.Reload()
    train = _rows(read_jsonl(run / "metrics.jsonl"), "train")
    assert [(e.step, e.value) for e in ea.Scalars("train/loss")] == [
        (r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in train
    ]
