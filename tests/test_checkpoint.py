"""Checkpoint atomicity, retention, corruption fallback and write errors."""

from __future__ import annotations

import errno

import pytest
import torch

from tunelab.errors import RunDirError
from tunelab.training import checkpoint as ckpt


def save(root, step, keep_last=5):
    w = {"w": torch.full((3,), float(step))}
    opt = {
        "state": {0: {"step": torch.tensor(float(step)), "exp_avg": torch.ones(3)}},
        "param_groups": [{"lr": 0.1, "params": [0]}],
    }
    return ckpt.save_checkpoint(
        root,
        step,
        weights=w,
        optimizer_state=opt,
        scheduler_state={"last_epoch": step},
        rng_states=[ckpt.rng_state()],
        loop_state={"step": step},
        keep_last=keep_last,
    )


def test_round_trip_is_exact(tmp_path):
    save(tmp_path, 3)
    data = ckpt.load_checkpoint(ckpt.step_dir(tmp_path, 3))
    assert torch.equal(data["weights"]["w"], torch.full((3,), 3.0))
    assert torch.equal(data["optimizer"]["state"][0]["exp_avg"], torch.ones(3))
    assert data["optimizer"]["param_groups"][0]["lr"] == 0.1 and data["state"]["step"] == 3


@pytest.mark.parametrize(
    "point", ["checkpoint:weights", "checkpoint:optimizer", "checkpoint:state", "checkpoint:marker"]
)
def test_crash_at_any_write_point_keeps_the_previous_checkpoint(tmp_path, monkeypatch, point):
    save(tmp_path, 1)

    def boom(p, step):
        if p == point:
            raise KeyboardInterrupt  # stands in for the process dying here

    monkeypatch.setattr(ckpt, "fault_point", boom)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path, 2)
    assert [p.name for p in ckpt.complete_checkpoints(tmp_path)] == ["step-0000001"]
    assert ckpt.latest_checkpoint(tmp_path)["state"]["step"] == 1


def test_leftovers_of_a_killed_write_are_never_picked(tmp_path):
    save(tmp_path, 1)
    (tmp_path / ".step-0000002.abc.tmp").mkdir()  # a write killed before its rename
    incomplete = tmp_path / "step-0000003"
    incomplete.mkdir()  # a folder without the completeness marker
    (incomplete / "weights.safetensors").write_bytes(b"partial")
    assert ckpt.latest_checkpoint(tmp_path)["state"]["step"] == 1
    ckpt.remove_partial(tmp_path)
    assert not (tmp_path / ".step-0000002.abc.tmp").exists()


@pytest.mark.parametrize(
    "victim",
    ["weights.safetensors", "optimizer.safetensors", "optimizer.json", "rng.json", "state.json"],
)
def test_corrupt_newest_falls_back_to_previous(tmp_path, victim):
    save(tmp_path, 1)
    path = save(tmp_path, 2) / victim
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(RunDirError, match="unreadable"):
        ckpt.load_checkpoint(path.parent)
    warnings = []
    assert ckpt.latest_checkpoint(tmp_path, warn=warnings.append)["state"]["step"] == 1
    assert "step-0000002" in warnings[0]


def test_keep_last_prunes_oldest(tmp_path):
    for s in range(1, 6):
        save(tmp_path, s, keep_last=2)
    assert [p.name for p in ckpt.complete_checkpoints(tmp_path)] == ["step-0000004", "step-0000005"]


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EACCES])
def test_disk_full_or_permission_error_is_clear_and_keeps_the_last_good(tmp_path, monkeypatch, err):
    import safetensors.torch

    save(tmp_path, 1)

    def fail(*a, **k):
        raise OSError(err, "simulated")

    monkeypatch.setattr(safetensors.torch, "save_file", fail)
    with pytest.raises(
        RunDirError, match=r"could not write checkpoint .*previous checkpoint is untouched"
    ):
        save(tmp_path, 2)
    assert ckpt.latest_checkpoint(tmp_path)["state"]["step"] == 1
    assert not list(tmp_path.glob(".step-*"))
