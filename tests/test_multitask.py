"""Multi-task training: mixture configs, the mixed loss, per-task evaluation, probes, L2-SP."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from helpers import gen_rows, tiny_config, write_jsonl
from tunelab.config import load_config
from tunelab.errors import ConfigError
from tunelab.tasks import build_task


def echo_rows(n: int, seed: int) -> list[dict]:
    """A second task: name the noun of the prompt (words of the tiny tokenizer's vocabulary)."""
    rng = random.Random(seed)
    words = ["movie", "film", "plot", "story"]
    rows = []
    for _ in range(n):
        w = rng.choice(words)
        rows.append({"prompt": f"it was that {w} with the cast", "completion": w})
    return rows


@pytest.fixture
def two_tasks(tmp_path):
    d = tmp_path / "mix"
    return {
        "sent": {
            "train": str(write_jsonl(d / "sent_train.jsonl", gen_rows(96, 0))),
            "validation": str(write_jsonl(d / "sent_val.jsonl", gen_rows(16, 1))),
        },
        "echo": {
            "train": str(write_jsonl(d / "echo_train.jsonl", echo_rows(24, 2))),
            "validation": str(write_jsonl(d / "echo_val.jsonl", echo_rows(12, 3))),
        },
    }


def mixture_config(model, two_tasks, out, **over):
    cfg = tiny_config(
        model,
        {"train": "x"},
        out,
        **{
            "task.type": "generation",
            "task.format": "prompt_completion",
            "task.max_new_tokens": 3,
            "model.max_length": 32,
            "training.lr": 1e-2,
            "training.max_steps": 60,
            "training.eval_every": 60,
            "training.batch_size": 8,
            "training.eval_before": True,
            **over,
        },
    )
    del cfg["data"]
    cfg.setdefault("mixture", {}).setdefault(
        "tasks",
        [
            {"name": "sent", "data": two_tasks["sent"], "task": {"metrics": ["exact_match"]}},
            {
                "name": "echo",
                "data": two_tasks["echo"],
                "task": {"metrics": ["exact_match"]},
                "weight": 1.0,
            },
        ],
    )
    return cfg


def test_mixture_config_errors_name_the_key():
    gen = {"type": "generation", "format": "prompt_completion"}
    a = {"name": "a", "data": {"train": "a.jsonl"}}
    with pytest.raises(ConfigError, match="task names must be unique; repeated: a"):
        load_config({"task": gen, "mixture": {"tasks": [a, a]}})
    with pytest.raises(ConfigError, match="classification and generation tasks cannot share"):
        load_config({"mixture": {"tasks": [a, {**a, "name": "b", "task": gen}]}})
    with pytest.raises(ConfigError, match="needs a weight for every task; missing: a"):
        load_config({"task": gen, "mixture": {"strategy": "weights", "tasks": [a]}})
    bad = {**a, "task": {"format": "template", "template": "nope"}}
    with pytest.raises(ConfigError, match=r"mixture.tasks\[0\] \(a\).task.template: 'nope'"):
        load_config({"task": gen, "mixture": {"tasks": [bad]}})
    with pytest.raises(ConfigError, match=r"mixture.tasks\[0\] \(a\).task: packing"):
        load_config({"task": gen, "mixture": {"tasks": [{**a, "task": {"packing": "x"}}]}})
    with pytest.raises(ConfigError, match="data.train and mixture.tasks are both set"):
        load_config({"task": gen, "data": {"train": "t.csv"}, "mixture": {"tasks": [a]}})
    with pytest.raises(ConfigError, match=r"mixture.tasks.0.name: use letters"):
        load_config({"task": gen, "mixture": {"tasks": [{**a, "name": "a b"}]}})
    cfg = load_config({"task": gen, "mixture": {"tasks": [a]}})
    assert cfg.training.metric == "mean_loss"  # no task has a generation metric
    cfg = load_config({"task": {**gen, "metrics": ["bleu"]}, "mixture": {"tasks": [a]}})
    assert cfg.training.metric == "mean"


@pytest.mark.parametrize("packing", [False, True])
def test_mixture_loss_weights_tokens_by_task(tiny_llama, two_tasks, tmp_path, packing):
    from transformers import AutoModelForCausalLM

    from tunelab.models.loading import load_tokenizer
    from tunelab.models.registry import resolve_model

    cfg = load_config(mixture_config(tiny_llama, two_tasks, tmp_path, **{"task.packing": packing}))
    tok = load_tokenizer(resolve_model(str(tiny_llama)))
    task = build_task(cfg, tok)
    splits = task.splits(cfg)
    train = splits["train"]
    assert train.parts == {"sent": (0, 96), "echo": (96, 120)}
    feats = [train.features[i] for i in (0, 1, 2, 100, 101)]
    sent = task.tasks["sent"]
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    with torch.no_grad():
        plain = sent.loss(model, sent.collate(feats))
        mixed = task.loss(model, task.collate(feats))
        s_nll, s_n = sent.token_nll(model, sent.collate(feats[:3]))
        e_nll, e_n = sent.token_nll(model, sent.collate(feats[3:]))
        assert float(mixed) == pytest.approx(float(plain), abs=1e-5)
        # a task's loss weight scales its tokens only
        task.specs["echo"]["loss_weight"] = 0.0
        only_sent = task.loss(model, task.collate(feats))
        assert float(only_sent) == pytest.approx(float(s_nll) / (s_n + e_n), abs=1e-5)
        # per-task normalisation: each task's mean token loss, weighted by its share of rows
        task.specs["echo"]["loss_weight"] = 2.0
        task.mixture["loss_normalization"] = "task"
        per_task = task.loss(model, task.collate(feats))
    want = 3 / 5 * float(s_nll) / s_n + 2.0 * 2 / 5 * float(e_nll) / e_n
    assert float(per_task) == pytest.approx(want, abs=1e-5)


def test_mixture_trains_scores_each_task_and_reloads(tiny_llama, two_tasks, tmp_path):
    import tunelab
    from tunelab.data.mixture import mixture_rates

    cfg = mixture_config(
        tiny_llama,
        two_tasks,
        tmp_path / "runs",
        **{
            "mixture.strategy": "temperature",
            "mixture.temperature": 2.0,
            "training.max_steps": 120,
            "training.eval_every": 120,
        },
    )
    res = tunelab.train(cfg)
    m = res.metrics
    assert {"sent/exact_match", "echo/exact_match", "sent/loss", "echo/loss"} <= set(m)
    assert m["mean"] == pytest.approx((m["sent/exact_match"] + m["echo/exact_match"]) / 2)
    assert m["mean_loss"] < res.before["mean_loss"]
    assert m["sent/exact_match"] >= 75.0 and m["echo/exact_match"] >= 40.0  # a copy: harder
    assert m["echo/loss"] < 0.2 * res.before["echo/loss"]
    # the realised mix is logged and follows T5's temperature formula (sqrt(96) : sqrt(24))
    logs = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").open()]
    mix = [r["mix"] for r in logs if r["type"] == "train"][-1]
    want = mixture_rates({"sent": 96, "echo": 24}, "temperature", temperature=2.0)
    assert want["sent"] == pytest.approx(2 / 3)
    assert mix["sent"] == pytest.approx(want["sent"], abs=0.06)  # 960 draws: SE ≈ 0.015
    preds = [json.loads(x) for x in (res.run_dir / "predictions" / "validation.jsonl").open()]
    assert {p["task"] for p in preds} == {"sent", "echo"} and len(preds) == 28
    # the finished mixture run reloads and scores the same
    again = tunelab.evaluate(res.run_dir)
    assert again["echo/exact_match"] == pytest.approx(m["echo/exact_match"])
    assert again["sent/loss"] == pytest.approx(m["sent/loss"], abs=1e-4)


def test_uniform_sampling_lifts_the_small_task(tiny_llama, two_tasks, tmp_path):
    import tunelab

    base = {"training.max_steps": 20, "training.eval_every": 20, "training.eval_before": False}
    prop = tunelab.train(mixture_config(tiny_llama, two_tasks, tmp_path / "p", **base))
    uni = tunelab.train(
        mixture_config(
            tiny_llama, two_tasks, tmp_path / "u", **{**base, "mixture.strategy": "uniform"}
        )
    )
    share = {
        name: [json.loads(x) for x in (r.run_dir / "metrics.jsonl").open() if '"train"' in x][-1][
            "mix"
        ]["echo"]
        for name, r in (("prop", prop), ("uni", uni))
    }
    assert share["prop"] < 0.35 < 0.4 < share["uni"]  # 24/120 = 0.2 against 0.5
    assert uni.metrics["echo/loss"] < prop.metrics["echo/loss"]


def test_probes_report_forgetting_deltas(tiny_llama, tmp_path):
    import tunelab

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
            "model.max_length": 32,
            "training.max_steps": 40,
            "training.lr": 1e-2,
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
    assert p["delta"]["perplexity"] == pytest.approx(
        p["after"]["perplexity"] - p["before"]["perplexity"]
    )
    assert p["after"]["perplexity"] != pytest.approx(p["before"]["perplexity"])
    before = json.loads((res.run_dir / "eval" / "probe-general_before.json").read_text())
    assert before["perplexity"] == pytest.approx(p["before"]["perplexity"])


def test_probe_scores_before_training_are_cached_by_content(tiny_llama, tmp_path, monkeypatch):
    import tunelab

    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path / "cache"))
    data = {"train": write_jsonl(tmp_path / "d" / "train.jsonl", gen_rows(32, 0))}
    general = write_jsonl(
        tmp_path / "d" / "general.jsonl", [{"text": "the music and the cast of it " * 3}] * 6
    )

    def run(name: str, **over):
        cfg = tiny_config(
            tiny_llama,
            data,
            tmp_path / "runs",
            **{
                "task.type": "generation",
                "task.format": "prompt_completion",
                "model.max_length": 32,
                "training.max_steps": 2,
                "output.name": name,
                **over,
            },
        )
        cfg["probes"] = [
            {
                "name": "general",
                "data": {"validation": str(general)},
                "task": {"format": "text", "fields": {"text": "text"}},
            }
        ]
        res = tunelab.train(cfg)
        return json.loads((res.run_dir / "run.json").read_text())["summary"]["probes"]["general"]

    first = run("a")
    cached = list((tmp_path / "cache" / "probes").glob("*.json"))
    assert len(cached) == 1
    stored = json.loads(cached[0].read_text())
    assert stored["general"]["metrics"]["perplexity"] == pytest.approx(
        first["before"]["perplexity"]
    )
    # mark the cached entry: an identical run must read it instead of scoring again
    stored["general"]["metrics"]["perplexity"] = 123.0
    cached[0].write_text(json.dumps(stored))
    assert run("b")["before"]["perplexity"] == 123.0
    # other starting weights (a LoRA initialisation) are another key: scored, not read
    third = run("c", method="lora")
    assert third["before"]["perplexity"] == pytest.approx(first["before"]["perplexity"], rel=1e-5)
    assert len(list((tmp_path / "cache" / "probes").glob("*.json"))) == 2
    monkeypatch.setenv("TUNELAB_PROBE_CACHE", "0")  # off: scored afresh, the mark is not read
    assert run("d")["before"]["perplexity"] == pytest.approx(first["before"]["perplexity"])


def test_l2sp_holds_pretrained_weights_and_trains_the_head(tiny_bert, keyword_data, tmp_path):
    from transformers import AutoModel, AutoModelForSequenceClassification

    import tunelab

    # lr·α = 1 with a constant schedule: every step pulls the body all the way back
    cfg = tiny_config(
        tiny_bert,
        keyword_data,
        tmp_path / "runs",
        **{
            "training.l2sp": 100.0,
            "training.lr": 1e-2,
            "training.scheduler": "constant",
            "training.max_steps": 10,
            "training.eval_every": 10,
            "training.weight_decay": 0.0,
        },
    )
    res = tunelab.train(cfg)
    trained = AutoModelForSequenceClassification.from_pretrained(res.run_dir / "model")
    start = AutoModel.from_pretrained(tiny_bert)
    w0 = start.encoder.layer[0].attention.self.query.weight
    w1 = trained.bert.encoder.layer[0].attention.self.query.weight
    assert torch.allclose(w0, w1, atol=1e-6)
    # without L2-SP the same run moves the body
    cfg["training"]["l2sp"] = None
    cfg["output"]["name"] = "free"
    free = AutoModelForSequenceClassification.from_pretrained(tunelab.train(cfg).run_dir / "model")
    assert not torch.allclose(w0, free.bert.encoder.layer[0].attention.self.query.weight, atol=1e-4)


def test_competence_and_curriculum_sampler():
    from tunelab.data.curriculum import CurriculumSampler, competence

    assert competence(0, 100, "linear", 0.2, 0.5) == pytest.approx(0.2)
    assert competence(25, 100, "linear", 0.2, 0.5) == pytest.approx(0.6)
    assert competence(25, 100, "root", 0.2, 0.5) == pytest.approx((0.04 + 0.96 * 0.5) ** 0.5)
    assert competence(50, 100, "root", 0.2, 0.5) == competence(90, 100, "linear", 0.2, 0.5) == 1
    difficulty = [float(i % 100) for i in range(100)][::-1]  # example 99 is the easiest
    s = CurriculumSampler(difficulty, 4, total_steps=20, pacing="linear", start=0.2, full_at=0.5)
    assert [s.available(t) for t in (0, 5, 10, 15)] == [20, 60, 100, 100]
    assert all(difficulty[i] < 20 for i in s.next_batch())  # the easiest fifth at the start
    assert all(difficulty[i] < 28 for i in s.next_batch())
    state = s.state_dict()
    later = [s.next_batch() for _ in range(15)]
    assert max(difficulty[i] for b in later[8:] for i in b) >= 50  # harder ones admitted
    s2 = CurriculumSampler(difficulty, 4, total_steps=20, pacing="linear", start=0.2, full_at=0.5)
    s2.load_state_dict(state)
    assert [s2.next_batch() for _ in range(15)] == later  # exact resume


def test_mixture_phases_switch_the_rates():
    from tunelab.data.mixture import MixtureSampler

    s = MixtureSampler(
        {"a": 10, "b": 10},
        4,
        {"a": 0.5, "b": 0.5},
        schedule=[(3, {"a": 1.0, "b": 0.0}), (6, {"a": 0.0, "b": 1.0})],
    )
    tasks = [{t for t, _ in s.next_batch()} for _ in range(8)]
    assert tasks[:3] == [{"a"}] * 3 and tasks[3:] == [{"b"}] * 5


def test_curriculum_by_column_starts_with_the_easy_rows(tiny_bert, tmp_path):
    import tunelab
    from helpers import keyword_rows, write_csv

    rows = keyword_rows(160, 1)
    for i, r in enumerate(rows):
        r["difficulty"] = i  # rows 0-31 are the easiest fifth
    data = {
        "train": write_csv(tmp_path / "c" / "train.csv", rows),
        "validation": write_csv(tmp_path / "c" / "val.csv", keyword_rows(32, 2)),
    }
    cfg = tiny_config(
        tiny_bert,
        data,
        tmp_path / "runs",
        **{
            "curriculum.by": "column",
            "curriculum.column": "difficulty",
            "curriculum.pacing": "linear",
            "curriculum.start": 0.2,
            "curriculum.full_at": 0.5,
            "training.trace_examples": True,
            "training.max_steps": 20,
            "training.eval_every": 20,
            "training.batch_size": 8,
        },
    )
    res = tunelab.train(cfg)
    trace = [json.loads(x) for x in (res.run_dir / "trace-rank0.jsonl").open()]
    # trace rows are data row numbers (header = row 1): difficulty i sits on row i + 2
    assert all(r - 2 < 32 for r in trace[0]["rows"])
    assert max(r - 2 for t in trace[12:] for r in t["rows"]) >= 100
    bad = [dict(r, difficulty="hard" if i == 3 else i) for i, r in enumerate(rows)]
    data["train"] = write_csv(tmp_path / "c" / "bad.csv", bad)
    cfg = tiny_config(
        tiny_bert,
        data,
        tmp_path / "runs2",
        **{"curriculum.by": "column", "curriculum.column": "difficulty"},
    )
    from tunelab.errors import DataError

    with pytest.raises(
        DataError, match=r"curriculum.column='difficulty' must hold a number.*'hard'"
    ):
        tunelab.train(cfg)
    with pytest.raises(ConfigError, match="curriculum.by=column needs curriculum.column"):
        load_config({"curriculum": {"by": "column"}})


@pytest.mark.parametrize("by", ["length", "loss"])
def test_curriculum_by_length_or_loss_trains(tiny_llama, tmp_path, by):
    import tunelab

    data = {
        "train": write_jsonl(tmp_path / "d" / "train.jsonl", gen_rows(64, 0)),
        "validation": write_jsonl(tmp_path / "d" / "val.jsonl", gen_rows(16, 1)),
    }
    cfg = tiny_config(
        tiny_llama,
        data,
        tmp_path / "runs",
        **{
            "task.type": "generation",
            "task.format": "prompt_completion",
            "model.max_length": 32,
            "training.max_steps": 40,
            "training.lr": 1e-2,
            "curriculum.by": by,
        },
    )
    res = tunelab.train(cfg)
    assert res.metrics["loss"] < 0.5 * res.before["loss"]


def test_stages_train_in_turn_from_the_previous_weights(tiny_bert, keyword_data, tmp_path):
    import tunelab
    from helpers import keyword_rows, write_csv

    related = write_csv(tmp_path / "rel" / "train.csv", keyword_rows(96, 7))
    cfg = tiny_config(
        tiny_bert,
        keyword_data,
        tmp_path / "runs",
        method="lora",
        **{
            "training.max_steps": 30,
            "training.eval_every": 30,
            "training.lr": 1e-2,
            "output.name": "staged",
        },
    )
    cfg["stages"] = [
        {"name": "related", "data": {"train": str(related)}, "training": {"max_steps": 20}},
        {"name": "target"},
    ]
    res = tunelab.train(cfg)
    root = tmp_path / "runs" / "staged"
    pipe = json.loads((root / "pipeline.json").read_text())
    assert [s["stage"] for s in pipe["stages"]] == ["related", "target"]
    first, second = (Path(s["run_dir"]) for s in pipe["stages"])
    assert first == root / "1-related" and res.run_dir == second == root / "2-target"
    # stage 2 starts from stage 1's merged model, and trains the head again
    assert pipe["stages"][1]["start_from"] == str(first / "merged")
    info = json.loads((second / "run.json").read_text())
    assert info["model"]["path"] == str(first / "merged")
    assert json.loads((first / "run.json").read_text())["summary"]["steps"] == 20
    before2 = info["summary"]["before"]["accuracy"]
    assert before2 == pytest.approx(pipe["stages"][0]["validation"]["accuracy"])
    again = tunelab.evaluate(second)
    assert again["accuracy"] == pytest.approx(res.metrics["accuracy"])
    # forgetting of the earlier stage: stage 2's model on stage 1's validation data, against
    # the score stage 1 ended with (both stages validate on the same file here)
    kept = pipe["stages"][1]["earlier_stages"]["related"]
    assert kept["at_own_end"] == pipe["stages"][0]["validation"]
    assert kept["now"]["accuracy"] == pytest.approx(res.metrics["accuracy"])
    want = kept["now"]["accuracy"] - kept["at_own_end"]["accuracy"]
    assert kept["delta"]["accuracy"] == pytest.approx(want)
    with pytest.raises(Exception, match="already holds a staged run"):
        tunelab.train(cfg)


def test_classification_tasks_get_one_head_each(tiny_bert, tmp_path):
    from transformers import AutoModelForSequenceClassification

    import tunelab
    from helpers import keyword_rows, write_csv

    three = ("negative", "neutral", "positive")
    files = {
        "two": {
            "train": write_csv(tmp_path / "c" / "two.csv", keyword_rows(160, 1)),
            "validation": write_csv(tmp_path / "c" / "two_val.csv", keyword_rows(30, 2)),
        },
        "three": {
            "train": write_csv(tmp_path / "c" / "three.csv", keyword_rows(96, 3, three)),
            "validation": write_csv(tmp_path / "c" / "three_val.csv", keyword_rows(30, 4, three)),
        },
    }
    cfg = tiny_config(
        tiny_bert,
        {"train": "x"},
        tmp_path / "runs",
        **{
            "training.max_steps": 300,
            "training.eval_every": 300,
            "training.lr": 5e-3,
            "mixture.strategy": "uniform",
        },
    )
    del cfg["data"]
    cfg["mixture"]["tasks"] = [
        {"name": n, "data": {k: str(v) for k, v in f.items()}} for n, f in files.items()
    ]
    res = tunelab.train(cfg)
    m = res.metrics
    assert m["mean"] == pytest.approx((m["two/accuracy"] + m["three/accuracy"]) / 2)
    assert m["two/accuracy"] >= 0.9 and m["three/accuracy"] >= 0.9  # chance: 0.5 and 0.33
    # a plain transformers classifier with every task's labels, one slice per task
    plain = AutoModelForSequenceClassification.from_pretrained(res.run_dir / "model")
    assert [plain.config.id2label[i] for i in range(5)] == [
        "two:negative",
        "two:positive",
        "three:negative",
        "three:neutral",
        "three:positive",
    ]
    preds = [json.loads(x) for x in (res.run_dir / "predictions" / "validation.jsonl").open()]
    three_rows = [p for p in preds if p["task"] == "three"]
    assert len(three_rows) == 30 and set(three_rows[0]["probabilities"]) == set(three)
    again = tunelab.evaluate(res.run_dir)
    assert again["three/accuracy"] == pytest.approx(m["three/accuracy"])


def test_per_task_adapters_are_served_by_name(tiny_llama, two_tasks, tmp_path):
    import tunelab

    cfg = mixture_config(
        tiny_llama,
        two_tasks,
        tmp_path / "runs",
        method="lora",
        **{
            "mixture.adapters": "per_task",
            "training.max_steps": 40,
            "training.eval_every": 40,
            "training.lr": 3e-2,
            "output.name": "per-task",
        },
    )
    res = tunelab.train(cfg)
    root = tmp_path / "runs" / "per-task"
    assert res.run_dir == root and (root / "adapters" / "sent" / "model").is_dir()
    assert set(json.loads((root / "adapters.json").read_text())["adapters"]) == {"sent", "echo"}
    adapters = tunelab.load_adapters(root)
    assert adapters.names == ["sent", "echo"]
    # each adapter, picked by task name, scores as its own run did
    for name in ("sent", "echo"):
        got = tunelab.evaluate(adapters.use(name))
        assert got["loss"] == pytest.approx(res.metrics[f"{name}/loss"], abs=1e-4)
    assert tunelab.evaluate(adapters.use("sent"))["loss"] != pytest.approx(
        res.metrics["echo/loss"], abs=1e-3
    )
    # the per-task adapters combine afterwards (TIES through PEFT) into one generating run
    combined = tunelab.combine_adapters(
        root,
        output=tmp_path / "runs" / "ties",
        combination="ties",
        weights={"sent": 0.5, "echo": 0.5},
    )
    out = tunelab.generate(combined, ["it was that film with the cast"], max_new_tokens=3)
    assert len(out) == 1 and isinstance(out[0], str)
    with pytest.raises(ConfigError, match="per_task needs an adapter method"):
        load_config(
            mixture_config(tiny_llama, two_tasks, tmp_path, **{"mixture.adapters": "per_task"})
        )


def test_mixture_task_builds_phase_schedules_from_its_config():
    from tunelab.tasks.mixture import MixedSplit, MixtureTask

    t = MixtureTask.__new__(MixtureTask)  # rates need only the mixture settings and specs
    phase = {
        "until": 0.5,
        "strategy": "weights",
        "weights": {"a": 1.0, "b": 0.0},
        "cap": None,
        "temperature": 2.0,
    }
    t.mixture = {
        "strategy": "temperature",
        "cap": None,
        "temperature": 2.0,
        "per": "example",
        "phases": [phase],
    }
    t.specs, t.names = {"a": {"weight": None}, "b": {"weight": None}}, ["a", "b"]
    split = MixedSplit("x", [{}] * 5, [{}] * 5, [], {"a": (0, 4), "b": (4, 5)})
    assert t.rates(split) == pytest.approx({"a": 2 / 3, "b": 1 / 3})  # sqrt(4) : sqrt(1)
    s = t.make_sampler(split, 2, 0, 1, 0, total_batches=10)
    assert s.schedule[0][0] == 5 and list(s.schedule[0][1]) == [1.0, 0.0]
    assert {task for task, _ in s.next_batch()} == {"a"}
