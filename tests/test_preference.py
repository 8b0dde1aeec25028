"""Preference training (task.type=preference): DPO and its family on tiny random causal LMs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from helpers import gen_rows, tiny_config, write_jsonl
from tunelab.errors import ConfigError, DataError


def pref_rows(n: int, seed: int) -> list[dict]:
    """``gen_rows`` as pairs: a review with a positive word prefers "good fun" over "bad dull",
    and the reverse."""
    other = {"good fun": "bad dull", "bad dull": "good fun"}
    return [
        {"prompt": r["prompt"], "chosen": r["completion"], "rejected": other[r["completion"]]}
        for r in gen_rows(n, seed)
    ]


@pytest.fixture
def pref_data(tmp_path) -> dict[str, Path]:
    return {
        "train": write_jsonl(tmp_path / "data" / "train.jsonl", pref_rows(96, 1)),
        "validation": write_jsonl(tmp_path / "data" / "val.jsonl", pref_rows(24, 2)),
    }


def pref_config(model, data, out, **over) -> dict:
    base = {
        "task.type": "preference",
        "method": "lora",
        "training.max_steps": 30,
        "training.eval_every": 30,
        "training.batch_size": 8,
        "training.lr": 1e-2,
        "preference.beta": 0.5,
        "preference.generate": 2,
        "task.max_new_tokens": 4,
        "lora.dropout": 0.0,
    }
    return tiny_config(model, data, out, **{**base, **over})


def run_dir_of(cfg: dict) -> Path:
    return Path(cfg["output"]["dir"]) / cfg["output"]["name"]


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def tiny_llama_bias(tmp_path_factory) -> Path:
    """A 2-layer Llama with bias terms (so that BitFit has something to train)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from conftest import _save_tiny

    return _save_tiny(
        tmp_path_factory.mktemp("tiny-llama-bias"),
        LlamaForCausalLM,
        LlamaConfig,
        num_key_value_heads=2,
        pad_token_id=0,
        attention_bias=True,
        mlp_bias=True,
    )


# -- the losses, by hand ------------------------------------------------------------------------
def _t(*v):
    import torch

    return torch.tensor(v, dtype=torch.float64)


@pytest.mark.parametrize(
    ("loss", "expected"),
    [
        # Δ = (pc-rc) - (pr-rr) = (-3+4) - (-5+4) = 2, β = 0.5
        ("dpo", -math.log(1 / (1 + math.exp(-1.0)))),
        ("hinge", 0.0),  # relu(1 - 0.5·2)
        # IPO: (1/2 - (-1)/4 - 1/(2·0.5))² = (0.75 - 1)²
        ("ipo", 0.0625),
        # SimPO: (−3/2 − (−5/4) − γ/β) = −0.25 − 1 = −1.25; −logσ(0.5·−1.25)
        ("simpo", -math.log(1 / (1 + math.exp(0.625)))),
    ],
)
def test_losses_as_trl_defines_them(loss, expected):
    from tunelab.config import PreferenceConfig
    from tunelab.tasks.preference import preference_losses

    s = {**PreferenceConfig().model_dump(), "loss": loss, "beta": 0.5, "gamma": 0.5}
    total, per, rc, rr = preference_losses(
        s, _t(-3.0), _t(-5.0), _t(2.0), _t(4.0), _t(-4.0), _t(-4.0)
    )
    assert float(total) == pytest.approx(expected, abs=1e-12)
    assert float(per[0]) == pytest.approx(expected, abs=1e-12)
    if loss != "simpo":
        assert float(rc[0]) == pytest.approx(0.5) and float(rr[0]) == pytest.approx(-0.5)


def test_label_smoothing_and_orpo():
    from tunelab.config import PreferenceConfig
    from tunelab.tasks.preference import preference_losses

    s = {**PreferenceConfig().model_dump(), "beta": 1.0, "label_smoothing": 0.2}
    total = preference_losses(s, _t(-1.0), _t(-2.0), _t(1.0), _t(1.0), _t(-1.0), _t(-1.0))[0]
    sig = 1 / (1 + math.exp(1.0))  # Δ = 1: σ(-1)
    assert float(total) == pytest.approx(-0.8 * math.log(1 - sig) - 0.2 * math.log(sig))
    s = {**s, "loss": "orpo", "orpo_lambda": 0.1}
    # two pairs: mean logps per token ac = -1, -0.5; ar = -2, -1.5
    pc, pr, nc, nr = _t(-2.0, -1.0), _t(-4.0, -3.0), _t(2.0, 2.0), _t(2.0, 2.0)
    total, _, rc, _ = preference_losses(s, pc, pr, nc, nr)

    def log_odds(a, r):
        return (a - r) - (math.log(1 - math.exp(a)) - math.log(1 - math.exp(r)))

    ratio = [math.log(1 / (1 + math.exp(-log_odds(a, r)))) for a, r in ((-1, -2), (-0.5, -1.5))]
    nll = 3.0 / 4.0  # chosen tokens' mean NLL over the batch
    assert float(total) == pytest.approx(nll - 0.1 * sum(ratio) / 2)
    assert [float(x) for x in rc] == pytest.approx([-0.1, -0.05])


# -- training with every method ---------------------------------------------------------------
def reference_logps_of(model_dir: Path, run: Path, rows: list[dict]) -> list[float]:
    """The pretrained model's log-probability of each row's chosen response, scored apart
    from the run (a fresh plain transformers model)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.tasks.preference import PreferenceTask

    info = json.loads((run / "run.json").read_text())
    tok = AutoTokenizer.from_pretrained(model_dir)
    task = PreferenceTask.from_metadata(info["task"], tok)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    feats = []
    for r in rows:
        p, c, rj = task.pair(r)
        p, c, rj = task.fit_pair(task.prompt_ids(p), task.response_ids(c), task.response_ids(rj))
        feats.append({"input_ids": p + c + rj, "prompt_len": len(p), "chosen_len": len(c)})
    with torch.no_grad():
        logps, _ = task.sequence_logps(model, task.collate(feats))
    return logps[: len(rows)].tolist()


#: methods whose model starts as the pretrained one (the first loss is ln 2 exactly)
STARTS_AS_PRETRAINED = {"full", "lora", "dora", "ia3", "adapter", "bitfit"}


@pytest.mark.parametrize(
    "method", ["full", "lora", "dora", "ia3", "adapter", "prefix", "prompt", "bitfit"]
)
def test_every_decoder_method_trains_with_the_right_reference(
    method, tiny_llama, tiny_llama_bias, pref_data, tmp_path
):
    import tunelab

    model = tiny_llama_bias if method == "bitfit" else tiny_llama
    over = {"prefix.num_virtual_tokens": 4, "prompt.num_virtual_tokens": 4}
    cfg = pref_config(model, pref_data, tmp_path / "runs", method=method, **over)
    res = tunelab.train(cfg)
    run = run_dir_of(cfg)
    before, after = res.before, res.metrics
    for key in ("loss", "rewards_chosen", "rewards_rejected", "reward_accuracy", "reward_margin"):
        assert math.isfinite(after[key]) and math.isfinite(before[key])
    assert after["logps_chosen"] < 0 and after["n"] == 24
    if method in STARTS_AS_PRETRAINED:
        assert before["loss"] == pytest.approx(math.log(2), abs=1e-6)
        assert before["reward_margin"] == pytest.approx(0.0, abs=1e-6)
    else:  # a soft prompt / prefix changes the model from the start; the reference has none
        assert abs(before["rewards_chosen"]) > 1e-4
    assert after["loss"] != before["loss"]
    # the reference really is the pretrained model: logps - reward/β, scored apart, agree
    rows = read_rows(run / "predictions" / "validation.jsonl")[:6]
    ref = reference_logps_of(model, run, rows)
    beta = cfg["preference"]["beta"]
    derived = [r["logps_chosen"] - r["reward_chosen"] / beta for r in rows]
    assert derived == pytest.approx(ref, abs=2e-4)
    assert sum("prediction" in r for r in read_rows(run / "predictions" / "validation.jsonl")) == 2


def test_lora_dpo_learns_the_preference(tiny_llama, tmp_path):
    import tunelab

    # 96 validation pairs (one pair moves accuracy 1 %, chance is 0.5 ± 0.05). Over training
    # seeds 0-7 this config ends at reward accuracy 0.86-1.00 and loss 0.21-0.38 (an AVX512
    # machine, fp32); at lr 1e-2 / batch 8 / 60 steps it ended at 0.58-0.83, too near any bar.
    data = {
        "train": write_jsonl(tmp_path / "data" / "train.jsonl", pref_rows(96, 1)),
        "validation": write_jsonl(tmp_path / "data" / "val.jsonl", pref_rows(96, 2)),
    }
    over = {"training.max_steps": 120, "training.lr": 5e-3, "training.batch_size": 16}
    res = tunelab.train(pref_config(tiny_llama, data, tmp_path / "runs", **over))
    assert res.before["reward_accuracy"] == 0.0  # all ties before training
    assert res.metrics["reward_accuracy"] >= 0.75 and res.metrics["loss"] < 0.5


def test_a_preference_run_is_served_as_the_language_model_it_trained(
    tiny_llama, pref_data, tmp_path
):
    pytest.importorskip("uvicorn")
    import tunelab
    from helpers import ThreadServer
    from tunelab.workflows.serve import build_app, load_targets

    over = {"training.max_steps": 6, "training.eval_every": 6, "training.eval_before": False}
    dpo = tunelab.train(pref_config(tiny_llama, pref_data, tmp_path / "runs", **over)).run_dir
    gen = {
        "train": write_jsonl(tmp_path / "gen" / "train.jsonl", gen_rows(48, 3)),
        "validation": write_jsonl(tmp_path / "gen" / "val.jsonl", gen_rows(8, 4)),
    }
    task = {"task.type": "generation", "task.format": "prompt_completion"}
    sft_cfg = tiny_config(tiny_llama, gen, tmp_path / "sft", method="lora", **over, **task)
    sft = tunelab.train(sft_cfg).run_dir
    prompts = ["the movie was good", "this film felt awful"]
    expected = {
        n: tunelab.generate(d, prompts, max_new_tokens=4) for n, d in (("dpo", dpo), ("sft", sft))
    }
    members = load_targets([f"dpo={dpo}", f"sft={sft}"])
    # an SFT and a DPO adapter of one base are one model in memory, picked per request
    assert members["dpo"].group is members["sft"].group and members["dpo"].adapter == "dpo"
    srv = ThreadServer(build_app(members))
    try:
        entries = {m["id"]: m for m in srv.get("/v1/models", key=None).json()["data"]}
        assert entries["dpo"]["task"] == "preference" and entries["sft"]["task"] == "generation"
        assert entries["dpo"]["endpoint"] == "/v1/chat/completions"
        client = srv.client(key=None)
        for name, want in expected.items():
            for prompt, text in zip(prompts, want):
                done = client.completions.create(model=name, prompt=prompt, max_tokens=4)
                assert done.choices[0].text == text
        refused = srv.post("/v1/classify", {"model": "dpo", "input": ["a"]}, key=None)
        assert refused.status_code == 400 and "/v1/chat/completions" in refused.text
    finally:
        srv.close()
    # the two adapters also combine: all the weight on one gives that run's own answers
    for name, other in (("sft", "dpo"), ("dpo", "sft")):
        runs = {"sft": sft, "dpo": dpo}
        mix = tunelab.combine_adapters(
            runs, weights={name: 1.0, other: 0.0}, output=tmp_path / f"only-{name}"
        )
        assert tunelab.generate(mix, prompts, max_new_tokens=4) == expected[name]


@pytest.mark.parametrize("loss", ["ipo", "hinge", "simpo", "orpo"])
def test_other_losses_train(loss, tiny_llama, pref_data, tmp_path):
    import tunelab

    cfg = pref_config(tiny_llama, pref_data, tmp_path / "runs", **{"preference.loss": loss})
    res = tunelab.train(cfg)
    assert res.metrics["loss"] < res.before["loss"]
    if loss in ("simpo", "orpo"):  # no reference: rewards are β × mean token log-probability
        assert res.before["rewards_chosen"] != 0.0


def test_precomputed_reference_is_stored_and_reused(tiny_llama, pref_data, tmp_path):
    import tunelab

    over = {"preference.reference": "precomputed", "method": "full", "training.lr": 1e-3}
    cfg = pref_config(tiny_llama, pref_data, tmp_path / "runs", **over)
    res = tunelab.train(cfg)
    run = run_dir_of(cfg)
    stored = json.loads((run / "reference_logps.json").read_text())
    assert set(stored) == {"train", "validation"} and len(stored["train"]["logps"]) == 96
    assert res.before["loss"] == pytest.approx(math.log(2), abs=1e-6)
    # the same run with a frozen copy gives the same scores
    copy_cfg = pref_config(
        tiny_llama, pref_data, tmp_path / "runs2", **{**over, "preference.reference": "frozen_copy"}
    )
    other = tunelab.train(copy_cfg)
    assert other.metrics["loss"] == pytest.approx(res.metrics["loss"], abs=1e-5)
    assert not (run_dir_of(copy_cfg) / "reference_logps.json").exists()


# -- data ---------------------------------------------------------------------------------------
def test_malformed_rows_strict_names_them_skip_counts_them(tiny_llama, tmp_path):
    import tunelab

    rows = pref_rows(40, 3)
    rows[3]["rejected"] = rows[3]["chosen"]
    rows[5]["chosen"] = ""
    del rows[7]["rejected"]
    data = {
        "train": write_jsonl(tmp_path / "bad.jsonl", rows),
        "validation": write_jsonl(tmp_path / "val.jsonl", pref_rows(8, 4)),
    }
    cfg = pref_config(tiny_llama, data, tmp_path / "runs", **{"training.max_steps": 2})
    with pytest.raises(DataError) as e:
        tunelab.train(cfg)
    msg = str(e.value)
    assert "row 4" in msg and "same response" in msg and "chosen is missing or empty" in msg
    cfg["data"]["on_error"] = "skip"
    cfg["output"]["name"] = "skip"
    tunelab.train(cfg)
    info = json.loads((run_dir_of(cfg) / "run.json").read_text())
    assert len(info["skipped_rows"]["train"]) == 3


def test_chat_rows_share_their_prompt(tiny_llama, tmp_path):
    from transformers import AutoTokenizer

    from tunelab.config import load_config
    from tunelab.data.sources import read_table
    from tunelab.tasks import build_task

    convo = [{"role": "user", "content": "the film was good"}]
    rows = [
        {
            "chosen": [*convo, {"role": "assistant", "content": "good fun"}],
            "rejected": [*convo, {"role": "assistant", "content": "bad dull"}],
        },
        {  # TRL's conversational form, under other column names
            "question": convo,
            "good": [{"role": "assistant", "content": "good fun"}],
            "bad": [{"role": "assistant", "content": "bad dull"}],
        },
    ]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    cfg = load_config(pref_config(tiny_llama, {"train": path}, tmp_path / "runs"))
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    task = build_task(cfg, tok)
    assert task.pair(rows[0]) == (convo, "good fun", "bad dull")
    task.s["fields"] = {"prompt": "question", "chosen": "good", "rejected": "bad"}
    assert task.pair(rows[1]) == (convo, "good fun", "bad dull")
    task.s["fields"] = {}
    with pytest.raises(KeyError, match="share no prompt"):
        task.pair({"chosen": rows[0]["chosen"][1:], "rejected": rows[0]["rejected"]})
    split = task.table_to_split(read_table(str(path), defer=True), "train", on_error="skip")
    assert len(split) == 1 and split.skipped  # the second row lacks `chosen` without fields


def test_prompt_is_cut_from_the_left_before_responses(tiny_llama, tmp_path):
    from transformers import AutoTokenizer

    from tunelab.config import load_config
    from tunelab.tasks import build_task

    data = {"train": write_jsonl(tmp_path / "t.jsonl", pref_rows(4, 0))}
    cfg = load_config(
        pref_config(tiny_llama, data, tmp_path / "r", **{"preference.max_prompt_length": 6})
    )
    task = build_task(cfg, AutoTokenizer.from_pretrained(tiny_llama))  # max_length 32
    p, c, r = list(range(100, 110)), [1] * 5, [2] * 7
    assert task.fit_pair(p, c, r) == (p[-6:], c, r)
    p, c, r = task.fit_pair(list(range(100, 110)), [1] * 30, [2] * 3)
    assert p == list(range(104, 110)) and c == [1] * 26 and r == [2] * 3
    task.s["too_long"] = "skip"
    assert task.fit_pair(list(range(10)), [1] * 30, [2]) is None


def test_packing_gives_the_padded_loss(tiny_llama, pref_data, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.config import load_config
    from tunelab.tasks import build_task

    cfg = load_config(pref_config(tiny_llama, pref_data, tmp_path / "r", method="full"))
    task = build_task(cfg, AutoTokenizer.from_pretrained(tiny_llama))
    split = task.splits(cfg)["train"]
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    feats = split.features[:6]
    with torch.no_grad():
        padded = task.sequence_logps(model, task.collate(feats))
        task.s["packing"] = True
        batch = task.collate(feats)
        assert batch["input_ids"].shape[0] < 12  # several sequences share a row
        packed = task.sequence_logps(model, batch)
    assert torch.allclose(padded[0], packed[0], atol=1e-4)
    assert torch.equal(padded[1], packed[1])
    # the LM head on exactly the response tokens gives what the generation path gives
    for packing in (False, True):
        task.s["packing"] = packing
        batch = task.collate(feats)
        with torch.no_grad():
            exact = task.sequence_logps(model, batch)
            task.exact_positions = False
            wide = task.sequence_logps(model, batch)
            task.exact_positions = True
        assert torch.allclose(exact[0], wide[0], atol=1e-5) and torch.equal(exact[1], wide[1])


def test_shared_prompt_scores_as_two_rows(tiny_llama, pref_data, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.config import load_config
    from tunelab.methods import get_method
    from tunelab.tasks import build_task

    cfg = load_config(pref_config(tiny_llama, pref_data, tmp_path / "r", method="full"))
    task = build_task(cfg, AutoTokenizer.from_pretrained(tiny_llama))
    feats = task.splits(cfg)["train"].features[:6]
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    assert task.can_share_prompt(model, get_method("full"))
    assert not task.can_share_prompt(model, get_method("prefix"))  # extra positions per row
    task.p["share_prompt"] = False
    assert not task.can_share_prompt(model, get_method("full"))
    with torch.no_grad():
        rows = task.sequence_logps(model, task.collate(feats))
        task.shared = True
        for packing in (False, True):
            task.s["packing"] = packing
            batch = task.collate(feats)
            n_rows = batch["input_ids"].shape[0]
            assert n_rows < 6 if packing else n_rows == 6  # packed: several pairs to a row
            shared = task.sequence_logps(model, batch)
            assert torch.allclose(rows[0], shared[0], atol=1e-5), (rows[0], shared[0])
            assert torch.equal(rows[1], shared[1])
    # one row per pair, the prompt once: rejected tokens see the prompt and themselves only
    task.s["packing"] = False
    batch = task.collate(feats)
    f = feats[0]
    p, c, n = f["prompt_len"], f["chosen_len"], len(f["input_ids"])
    mask = batch["attention_mask"][0, 0]
    assert batch["input_ids"][0, :n].tolist() == f["input_ids"]
    assert batch["position_ids"][0, :n].tolist() == [*range(p + c), *range(p, n - c)]
    assert mask[p + c : n, :p].all() and not mask[p + c : n, p : p + c].any()
    causal = torch.ones(p + c, p + c, dtype=torch.bool).tril()
    assert torch.equal(mask[: p + c, : p + c], causal) and not mask[:n, n:].any()


def test_shared_prompt_trains_as_two_rows(tiny_llama, pref_data, tmp_path, monkeypatch):
    import tunelab
    from tunelab.tasks import preference

    built = []  # which layout each training run's batches had (LoRA: PEFT around the model)
    real = preference.shared_prompt_batch
    monkeypatch.setattr(
        preference, "shared_prompt_batch", lambda *a: built.append(a[0]) or real(*a)
    )
    losses = {}
    for share in (True, False):
        over = {"preference.share_prompt": share, "training.max_steps": 6, "training.log_every": 1}
        cfg = pref_config(tiny_llama, pref_data, tmp_path / f"runs-{share}", **over)
        before = len(built)
        res = tunelab.train(cfg)
        assert (len(built) > before) == share
        rows = read_rows(run_dir_of(cfg) / "metrics.jsonl")
        losses[share] = ([r["loss"] for r in rows if r.get("type") == "train"], res)
    (a, ra), (b, rb) = losses[True], losses[False]
    assert len(a) == 6 and a == pytest.approx(b, abs=1e-5)
    assert ra.metrics["logps_chosen"] == pytest.approx(rb.metrics["logps_chosen"], abs=1e-4)


def test_config_errors_name_the_key():
    from tunelab.config import load_config

    with pytest.raises(ConfigError, match="preference.loss: Input should be 'dpo'"):
        load_config({"task": {"type": "preference"}, "preference": {"loss": "kto"}})
    with pytest.raises(ConfigError, match="preference.label_smoothing"):
        load_config({"preference": {"label_smoothing": 0.7}})
    with pytest.raises(ConfigError, match="preference tasks train alone"):
        load_config(
            {
                "task": {"type": "preference"},
                "mixture": {"tasks": [{"name": "a", "data": {"train": "x.jsonl"}}]},
            }
        )


# -- resume, human judgements, two processes ---------------------------------------------------
RUN = "import json, sys, tunelab; tunelab.train(json.load(open(sys.argv[1])))"


def run_process(cfg: dict, tmp: Path, fault: str | None = None):
    import os
    import subprocess
    import sys

    path = tmp / f"cfg-{len(list(tmp.glob('cfg-*')))}.json"
    path.write_text(json.dumps(cfg, default=str))
    env = {k: v for k, v in os.environ.items() if k != "TUNELAB_FAULT"}
    if fault:
        env["TUNELAB_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-c", RUN, str(path)], capture_output=True, text=True, timeout=300, env=env
    )


@pytest.mark.parametrize("reference", ["auto", "precomputed"])
def test_killed_dpo_run_resumes_bit_identical(reference, tiny_llama, pref_data, tmp_path):
    import signal

    from safetensors.torch import load_file

    over = {
        "preference.reference": reference,
        "training.max_steps": 16,
        "training.save_every": 4,
        "training.eval_every": 8,
        "lora.dropout": 0.1,  # the resumed RNG must also match
    }
    cfg = pref_config(tiny_llama, pref_data, tmp_path / "runs", **over)
    cfg["output"]["name"] = "whole"
    whole = run_process(cfg, tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]
    cfg["output"]["name"] = "killed"
    assert run_process(cfg, tmp_path, fault="kill:step:10").returncode == -signal.SIGKILL
    killed = tmp_path / "runs" / "killed"
    stored = killed / "reference_logps.json"
    written = stored.stat().st_mtime_ns if reference == "precomputed" else None
    resumed = run_process({**cfg, "resume": True}, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr
    if written is not None:  # the stored reference was read back, not written again
        assert stored.stat().st_mtime_ns == written
    a = load_file(str(tmp_path / "runs" / "whole" / "model" / "adapter_model.safetensors"))
    b = load_file(str(killed / "model" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    evals = [
        json.loads((tmp_path / "runs" / n / "eval" / "validation.json").read_text())
        for n in ("whole", "killed")
    ]
    assert evals[0] == evals[1]


def test_human_ab_judgements_train_as_preference_pairs(tiny_llama, tmp_path):
    import csv

    import tunelab
    from tunelab.cli import main
    from tunelab.evaluation.human import export_sheet

    def fake_run(folder: Path, tag: str) -> Path:
        rows = [
            {"row": i, "prompt": f"the film was {w}", "reference": "", "prediction": f"{tag} {w}"}
            for i, w in enumerate(["good", "great", "bad", "dull", "fun", "weak"] * 2)
        ]
        write_jsonl(folder / "predictions" / "validation.jsonl", rows)
        return folder

    ra, rb = fake_run(tmp_path / "a", "good fun"), fake_run(tmp_path / "b", "bad dull")
    paths = export_sheet([ra, rb], tmp_path / "pair", n=12, seed=1)
    with open(paths["csv"], newline="") as fh:
        items = list(csv.DictReader(fh))
    for r in items:  # a rater preferring run b's outputs, one tie
        r["preference"] = "A" if r["output_a"].startswith("bad") else "B"
    items[0]["preference"] = "tie"
    with open(tmp_path / "rater.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(items[0]))
        w.writeheader()
        w.writerows(items)
    pairs = tmp_path / "pairs.jsonl"
    assert (
        main(
            [
                "human",
                "import",
                str(paths["key"]),
                str(tmp_path / "rater.csv"),
                "--preferences",
                str(pairs),
            ]
        )
        == 0
    )
    written = read_rows(pairs)
    assert len(written) == 11 and all(p["chosen"].startswith("bad dull") for p in written)
    cfg = pref_config(
        tiny_llama,
        {"train": pairs, "validation": pairs},
        tmp_path / "runs",
        **{"training.max_steps": 4, "training.eval_every": 4},
    )
    res = tunelab.train(cfg)
    assert res.metrics["n"] == 11 and math.isfinite(res.metrics["loss"])


WORKER = """import json, sys, tunelab
res = tunelab.train(json.load(open(sys.argv[1])))
print("REWARD_ACCURACY", res.metrics["reward_accuracy"])
"""


@pytest.mark.distributed
def test_two_processes_train_a_dpo_run(tiny_llama, pref_data, tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    outs = []
    for name in ("a", "b"):
        cfg = pref_config(tiny_llama, pref_data, tmp_path / "runs", **{"training.max_steps": 12})
        cfg["output"]["name"] = name
        cfg["training"]["eval_every"] = 6
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(cfg, default=str))
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(root / "configs/accelerate/two_processes.yaml"),
            str(worker),
            str(path),
        ]
        port = str(29600 + os.getpid() % 1000)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": port}
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.count("REWARD_ACCURACY") == 2
        outs.append(tmp_path / "runs" / name)
    info = json.loads((outs[0] / "run.json").read_text())
    assert info["processes"] == 2 and info["status"] == "completed"
    ev = [json.loads((d / "eval" / "validation.json").read_text()) for d in outs]
    assert ev[0] == ev[1] and ev[0]["n"] == 24
    train = [r for r in read_rows(outs[0] / "metrics.jsonl") if r["type"] == "train"]
    assert train[-1]["examples"] == 12 * 16  # 8 pairs per process per step
    preds = read_rows(outs[0] / "predictions" / "validation.jsonl")
    assert len(preds) == 24 and sum("prediction" in p for p in preds) == 2


def test_sft_then_preference_stages_and_the_cli(tiny_llama, pref_data, tmp_path, capsys):
    """InstructGPT's two stages in one config: SFT, then DPO from the SFT stage's weights."""
    import tunelab
    from helpers import gen_rows
    from tunelab.cli import main

    sft = write_jsonl(tmp_path / "sft.jsonl", gen_rows(48, 5))
    cfg = pref_config(tiny_llama, {"train": sft}, tmp_path / "runs")
    cfg["task"] = {"type": "generation", "format": "prompt_completion", "max_new_tokens": 4}
    cfg["training"].update(max_steps=6, eval_every=6)
    cfg["stages"] = [
        {"name": "sft"},
        {
            "name": "dpo",
            "data": {"train": str(pref_data["train"]), "validation": str(pref_data["validation"])},
            "task": {"type": "preference"},
        },
    ]
    res = tunelab.train(cfg)
    root = tmp_path / "runs" / "run"
    pipeline = json.loads((root / "pipeline.json").read_text())
    assert [s["stage"] for s in pipeline["stages"]] == ["sft", "dpo"]
    dpo = root / "2-dpo"
    info = json.loads((dpo / "run.json").read_text())
    assert info["task"]["type"] == "preference" and info["model"]["path"].endswith("merged")
    assert res.before["loss"] == pytest.approx(math.log(2), abs=1e-6)  # the SFT model is the start
    assert main(["report", str(dpo), "--output", str(tmp_path / "r.html")]) == 0
    assert "reward_accuracy" in (tmp_path / "r.html").read_text()
    capsys.readouterr()
    assert main(["eval", str(dpo)]) == 0
    out = capsys.readouterr().out
    assert '"logps_chosen"' in out and "written:" in out
    again = json.loads((dpo / "eval" / "validation.json").read_text())  # LoRA off: rewards
    assert again["reward_accuracy"] == pytest.approx(res.metrics["reward_accuracy"])


def test_seq2seq_preference(tiny_t5, pref_data, tmp_path):
    import tunelab

    cfg = pref_config(tiny_t5, pref_data, tmp_path / "runs", **{"training.max_steps": 10})
    res = tunelab.train(cfg)
    assert res.before["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert res.metrics["loss"] != res.before["loss"] and res.metrics["n"] == 24
    info = json.loads((res.run_dir / "run.json").read_text())
    assert info["task"]["seq2seq"] is True
