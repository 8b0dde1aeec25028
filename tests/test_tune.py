"""`tunelab tune`: the search section, a study end to end, pruning, outputs, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import keyword_rows, tiny_config, write_csv

SPACE = {
    "training.lr": {"float": [1e-4, 2e-2], "log": True},
    "training.batch_size": {"choice": [8, 16]},
    "method": {"choice": ["full", "lora"]},
    "lora.r": {"int": [2, 8], "log": True, "when": {"method": ["lora"]}},
}


def study_config(model: Path, data: dict, out: Path, **search) -> dict:
    cfg = tiny_config(model, data, out, **{"training.max_steps": 12, "training.eval_every": 4})
    cfg["output"] = {"dir": str(out), "name": "s"}
    cfg["search"] = {"space": SPACE, "seed": 3, **search}
    return cfg


def write_config(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


# -- the config section --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("space", "needle"),
    [
        (
            {"training.lr": {"float": [1e-3, 1e-5]}},
            "search.space.training.lr: float: give [low, high]",
        ),
        ({"training.lrr": {"float": [1e-5, 1e-3]}}, "search.space.training.lrr: value"),
        ({"training.lr": {"float": [0.5, 2.0]}}, "search.space.training.lr: value 2.0"),
        ({"method": {"choice": ["full", "nope"]}}, "search.space.method: value 'nope'"),
        ({"lora.r": {"int": [0, 8], "log": True}}, "search.space.lora.r: log: true needs low > 0"),
        ({"lora.r": {"int": [2, 8], "when": {"method": ["lora"]}}}, "search.space.lora.r.when"),
        ({"lora.r": [2, 8]}, "search.space.lora.r: give a mapping"),
        ({"lora.r": {"int": [2, 8], "choice": [2]}}, "search.space.lora.r: give exactly one"),
        ({"lora.r": {"int": [2, 8], "wen": {}}}, "search.space.lora.r: wen"),
    ],
)
def test_bad_space_is_one_error_naming_the_key(space, needle):
    from tunelab.config import load_config
    from tunelab.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        load_config({"search": {"space": space}})
    assert needle in str(e.value)
    assert "search: search" not in str(e.value)


def test_search_section_checks():
    from tunelab.config import load_config
    from tunelab.errors import ConfigError

    for search, needle in [
        ({"metric": "test_accuracy"}, "search.metric: the search optimises a validation score"),
        ({"objectives": ["accuracy", "trainable_params"], "pruner": "median"}, "search.pruner"),
        ({"sampler": "grid", "space": {"training.lr": {"float": [1e-5, 1e-3]}}}, "sampler=grid"),
        ({"objectives": ["accuracy"], "directions": ["maximize", "minimize"]}, "search.directions"),
        ({"sampler": "annealing"}, "search.sampler"),
    ]:
        with pytest.raises(ConfigError, match=".") as e:
            load_config({"search": search})
        assert needle in str(e.value), str(e.value)
    cfg = load_config({"search": {"space": SPACE}}, ["search.seed=7"])
    assert cfg.search.seed == 7
    assert cfg.search.ordered_keys().index("method") < cfg.search.ordered_keys().index("lora.r")


def test_conditional_parameter_sampled_only_when_its_condition_holds():
    import optuna

    from tunelab.config import load_config
    from tunelab.workflows.tune import suggest

    s = load_config({"search": {"space": SPACE}}).search
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        params = suggest(trial, s)
        seen.add(params["method"])
        assert ("lora.r" in params) == (params["method"] == "lora")
        assert 2 <= params.get("lora.r", 2) <= 8 and 1e-4 <= params["training.lr"] <= 2e-2
        study.tell(trial, 0.0)
    assert seen == {"full", "lora"}


# -- a study end to end --------------------------------------------------------------------
def test_study_end_to_end_with_sqlite(tiny_bert, keyword_data, tmp_path):
    from tunelab import rundir
    from tunelab.cli import main
    from tunelab.workflows.runs import evaluate

    data = {**keyword_data, "test": write_csv(tmp_path / "test.csv", keyword_rows(40, 9))}
    cfg = study_config(tiny_bert, data, tmp_path / "runs", pruner="none")
    cfg["data"]["test"] = str(data["test"])
    path = write_config(tmp_path, cfg)
    assert main(["tune", str(path), "--trials", "3"]) == 0
    study = tmp_path / "runs" / "s"
    rec = json.loads((study / "study.json").read_text())
    assert [t["state"] for t in rec["trials"]] == ["complete"] * 3
    assert (study / "study.db").is_file()
    assert rec["validation"] == str(keyword_data["validation"])
    best = rec["trials"][rec["best"][0]]
    assert best["values"]["accuracy"] == max(t["values"]["accuracy"] for t in rec["trials"])
    for t in rec["trials"]:
        run = study / t["run_dir"]
        info = rundir.read_info(run)
        assert info["status"] == "completed" and info["trial"]["params"] == t["params"]
        assert info["final"]["validation"]["accuracy"] == pytest.approx(t["values"]["accuracy"])
        assert "test" not in info["final"]  # only the best trial meets the test split
        assert (rundir.eval_path(run, "file-test").is_file()) == (t["number"] == best["number"])
    assert rec["best_test"]["metrics"]["n"] == 40
    # a trial is an ordinary run directory
    again = evaluate(study / best["run_dir"])
    assert again["accuracy"] == pytest.approx(best["values"]["accuracy"])
    assert {"history", "parallel_coordinates"} <= set(rec["plots"])
    for p in rec["plots"].values():
        assert (study / p).stat().st_size > 1000
    # best.yaml trains as is, to its own run directory, with the test split back
    best_cfg = yaml.safe_load((study / "best.yaml").read_text())
    assert best_cfg["output"]["name"] == "s-best" and "search" not in best_cfg
    for key, value in best["params"].items():
        section, _, leaf = key.rpartition(".")
        assert (best_cfg[section][leaf] if section else best_cfg[leaf]) == value
    assert main(["train", str(study / "best.yaml")]) == 0
    info = rundir.read_info(tmp_path / "runs" / "s-best")
    assert info["final"]["validation"]["accuracy"] == pytest.approx(best["values"]["accuracy"])
    assert info["final"]["test"]["accuracy"] == pytest.approx(
        rec["best_test"]["metrics"]["accuracy"]
    )
    # tunelab report STUDY: the trials table and the plots
    out = tmp_path / "report.html"
    assert main(["report", str(study), "--output", str(out)]) == 0
    page = out.read_text()
    assert "Study s" in page and page.count("<img") >= 2 + 2  # study plots + run curves
    for t in rec["trials"]:
        assert t["run_dir"] in page
    # the same command again: the study is complete, nothing more runs
    assert main(["tune", str(path), "--trials", "3"]) == 0
    assert len(json.loads((study / "study.json").read_text())["trials"]) == 3


def test_pruned_trial_says_so_in_run_json(tiny_bert, keyword_data, tmp_path):
    """The median pruner with no warm-up: the first trial that scores below the median of the
    others at an evaluation is stopped there."""
    from tunelab import rundir
    from tunelab.workflows.tune import tune

    cfg = study_config(tiny_bert, keyword_data, tmp_path / "runs", pruner="median")
    cfg["training"].update(max_steps=24, eval_every=4, load_best=False)
    cfg["search"]["space"] = {"training.lr": {"choice": [1e-2, 1e-7]}}
    cfg["search"]["prune_startup_trials"] = 1
    cfg["search"]["sampler"] = "grid"
    res = tune(cfg, ["search.heartbeat_s=5"], trials=3)
    states = [t["state"] for t in res.trials]
    assert "pruned" in states, states
    for t in res.trials:
        info = rundir.read_info(res.study_dir / t["run_dir"])
        if t["state"] == "pruned":
            p = info["pruned"]
            assert p["metric"] == "accuracy" and p["step"] == t["pruned"]["step"] < 24
            assert p["value"] == pytest.approx(t["pruned"]["value"])
            assert info["summary"]["stop_reason"] == "pruned"
            assert info["summary"]["steps"] == p["step"]
        else:
            assert "pruned" not in info and info["summary"]["steps"] == 24


def test_held_out_validation_is_said_and_multi_objective_front(tiny_bert, keyword_data, tmp_path):
    from tunelab.workflows.tune import tune

    data = {"train": keyword_data["train"]}
    cfg = study_config(
        tiny_bert, data, tmp_path / "runs", objectives=["accuracy", "trainable_params"]
    )
    del cfg["data"]["validation"]
    res = tune(cfg, trials=3, study="mo")
    rec = json.loads((res.study_dir / "study.json").read_text())
    assert rec["validation"].startswith("held out from train: 10%")
    assert rec["directions"] == ["maximize", "minimize"] and rec["pruner"] == "none"
    assert "pareto_front" in rec["plots"]
    values = {t["number"]: t["values"] for t in res.trials}
    for b in rec["best"]:  # nothing on the front is dominated by another trial
        for v in values.values():
            assert not (
                v["accuracy"] >= values[b]["accuracy"]
                and v["trainable_params"] <= values[b]["trainable_params"]
                and v != values[b]
            )


def test_tune_refusals(tiny_bert, keyword_data, tmp_path):
    from tunelab.errors import ConfigError
    from tunelab.workflows.tune import tune

    cfg = study_config(tiny_bert, keyword_data, tmp_path / "runs")
    with pytest.raises(ConfigError, match="search.space: nothing to search"):
        tune({**cfg, "search": {}}, trials=1)
    with pytest.raises(ConfigError, match="--trials"):
        tune(cfg, trials=0)
    res = tune(cfg, trials=1, study="a", output=tmp_path / "a")
    assert len(res.trials) == 1
    with pytest.raises(ConfigError, match="started with another config"):
        tune(cfg, ["training.max_steps=8"], trials=1, study="a", output=tmp_path / "a")


def test_timeout_starts_no_new_trial(tiny_bert, keyword_data, tmp_path):
    """Past --timeout no trial starts: here none at all, and the record says so."""
    from tunelab.workflows.tune import tune

    cfg = study_config(tiny_bert, keyword_data, tmp_path / "runs")
    res = tune(cfg, trials=3, timeout=0)
    assert res.trials == [] and res.best == []
    rec = json.loads((res.study_dir / "study.json").read_text())
    assert rec["counts"] == {"complete": 0, "pruned": 0, "fail": 0, "running": 0}
    assert not (res.study_dir / "best.yaml").exists()
    assert not list(res.study_dir.glob("trial-*"))


def test_failed_trials_are_recorded_and_a_run_of_them_stops(tiny_bert, keyword_data, tmp_path):
    """A trial whose run fails is a failed trial (its error kept) and the study goes on; three
    in a row stop `tunelab tune` with the last error, and study.json holds them."""
    from tunelab.errors import TunelabError
    from tunelab.workflows.tune import study_records, tune

    cfg = study_config(tiny_bert, keyword_data, tmp_path / "runs")
    cfg["search"]["space"] = {"data.text_column": {"choice": ["nope"]}}
    with pytest.raises(TunelabError, match="3 trials in a row failed; the last: .*nope"):
        tune(cfg, trials=2)
    import optuna

    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/runs/s/study.db")
    recs, best = study_records(study, ["accuracy"])
    assert [r["state"] for r in recs] == ["fail"] * 3 and best == []
    assert all("nope" in r["error"] for r in recs)


def test_a_trial_is_a_tracker_run_in_the_studys_group(tmp_path, tiny_bert, keyword_data):
    from tunelab.config import load_config
    from tunelab.workflows.tune import trial_config

    cfg = load_config(study_config(tiny_bert, keyword_data, tmp_path))
    trial = trial_config(cfg, {"training.lr": 1e-3}, tmp_path / "s", "trial-0003", "s", 3)
    assert trial.training.tracker_group == "s"
    assert trial.output.name == "trial-0003" and trial.training.lr == 1e-3
    mine = load_config(
        {**cfg.to_dict(), "training": {**cfg.to_dict()["training"], "tracker_group": "sweep"}}
    )
    assert (
        trial_config(mine, {}, tmp_path / "s", "trial-0004", "s", 4).training.tracker_group
        == "sweep"
    )
