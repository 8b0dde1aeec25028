"""Generation task: formats, label masking, packing, truncation, training and generating."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import gen_rows, tiny_config, write_jsonl
from tunelab.config import load_config
from tunelab.data.sources import read_table
from tunelab.errors import ConfigError
from tunelab.models.loading import load_tokenizer
from tunelab.models.registry import resolve_model
from tunelab.tasks.generation import IGNORE, GenerationTask


@pytest.fixture
def gen_data(tmp_path):
    return {
        "train": write_jsonl(tmp_path / "gen" / "train.jsonl", gen_rows(96, 0)),
        "validation": write_jsonl(tmp_path / "gen" / "val.jsonl", gen_rows(24, 1)),
    }


def make_task(folder, **task):
    cfg = load_config(
        {
            "model": {"name": str(folder), "max_length": 48},
            "task": {"type": "generation", "format": "prompt_completion", **task},
        }
    )
    r = resolve_model(str(folder))
    return GenerationTask.from_config(cfg, None, load_tokenizer(r)), r


def split_of(task, rows, tmp_path, name="x"):
    return task.table_to_split(read_table(str(write_jsonl(tmp_path / f"{name}.jsonl", rows))), name)


def test_only_response_tokens_carry_labels(tiny_llama, tmp_path):
    task, _ = make_task(tiny_llama)
    tok = task.tokenizer
    split = split_of(task, [{"prompt": "the movie was good", "completion": "good fun"}], tmp_path)
    f = split.features[0]
    response = tok("good fun", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    n = len(f["input_ids"])
    assert f["labels"][: n - len(response)] == [IGNORE] * (n - len(response))
    assert f["labels"][n - len(response) :] == response
    assert f["input_ids"][n - len(response) :] == response
    whole, _ = make_task(tiny_llama, loss_on="all")
    g = split_of(whole, [{"prompt": "the movie was good", "completion": "good fun"}], tmp_path, "y")
    assert g.features[0]["labels"] == g.features[0]["input_ids"]


@pytest.mark.parametrize("loss_on", ["response", "all"])
def test_packed_batch_loss_equals_unpacked(tiny_llama, tmp_path, loss_on):
    from transformers import AutoModelForCausalLM

    rows = gen_rows(5, 3)
    rows[1]["prompt"] += " the plot was very quite long indeed"  # uneven lengths
    packed_task, _ = make_task(tiny_llama, packing=True, loss_on=loss_on)
    plain_task, _ = make_task(tiny_llama, loss_on=loss_on)
    feats = split_of(plain_task, rows, tmp_path).features
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    with torch.no_grad():
        packed = packed_task.loss(model, packed_task.collate(feats))
        padded = plain_task.loss(model, plain_task.collate(feats))
        # and each example alone, token-weighted
        parts = [plain_task.token_nll(model, plain_task.collate([f])) for f in feats]
    alone = sum(float(n) for n, _ in parts) / sum(k for _, k in parts)
    assert float(packed) == pytest.approx(float(padded), abs=1e-4)
    assert float(packed) == pytest.approx(alone, abs=1e-4)
    # without the reset positions the examples would see each other: the loss differs
    b = packed_task.collate(feats)
    del b["position_ids"]
    with torch.no_grad():
        assert abs(float(packed_task.loss(model, b)) - float(packed)) > 1e-3


def test_packing_fills_rows_up_to_max_length_and_keeps_the_loss(tiny_llama, tmp_path):
    from transformers import AutoModelForCausalLM

    rows = gen_rows(6, 4)
    for r in rows[:3]:  # three long examples (close to max_length 48), three short ones
        r["prompt"] += " the plot was very long" * 5
    packed_task, _ = make_task(tiny_llama, packing=True)
    plain_task, _ = make_task(tiny_llama)
    feats = split_of(plain_task, rows, tmp_path).features
    lengths = [len(f["input_ids"]) for f in feats]
    layout = packed_task.pack_layout(feats)
    assert sorted(i for row in layout for i in row) == list(range(6))  # each example once
    assert all(sum(lengths[i] for i in row) <= 48 for row in layout)
    assert 1 < len(layout) < 6  # long examples do not share a row; short ones fill in
    batch = packed_task.collate(feats)
    assert batch["input_ids"].shape == (
        len(layout),
        max(sum(lengths[i] for i in r) for r in layout),
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    with torch.no_grad():
        packed = packed_task.loss(model, batch)
        padded = plain_task.loss(model, plain_task.collate(feats))
    assert float(packed) == pytest.approx(float(padded), abs=1e-4)


def test_right_padded_batches_drop_the_mask_and_keep_the_loss(tiny_llama, tmp_path):
    """Causal rows padded on the right run without the mask (SDPA's causal kernel): every
    example's loss is what it is with the mask, and a mask with holes is kept."""
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    rows = gen_rows(4, 2)
    rows[0]["prompt"] += " the plot was very quite long indeed and slow"  # uneven lengths
    task, _ = make_task(tiny_llama)
    feats = split_of(task, rows, tmp_path).features
    batch = task.collate(feats)
    assert (batch["attention_mask"] == 0).any()  # there is padding to skip
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    seen = []
    model.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw.get("attention_mask")), with_kwargs=True
    )
    with torch.no_grad():
        nll, _, _ = task.token_losses(model, dict(batch))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert seen[0] is None
    ref = F.cross_entropy(
        logits[:, :-1].flatten(0, 1),
        batch["labels"][:, 1:].flatten(),
        ignore_index=IGNORE,
        reduction="sum",
    )
    assert float(nll.sum()) == pytest.approx(float(ref), rel=1e-5)
    holed = dict(batch, attention_mask=batch["attention_mask"].clone())
    holed["attention_mask"][0, 1] = 0
    with torch.no_grad():
        task.token_losses(model, holed)
    assert seen[-1] is not None


def test_long_rows_lose_prompt_tokens_never_response_tokens(tiny_llama, tmp_path):
    long = {"prompt": " ".join(["the movie"] * 60), "completion": "good fun"}
    task, _ = make_task(tiny_llama)
    f = split_of(task, [long], tmp_path).features[0]
    assert len(f["input_ids"]) == 48
    tok = task.tokenizer
    response = tok("good fun", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert [x for x in f["labels"] if x != IGNORE] == response
    skip, _ = make_task(tiny_llama, too_long="skip")
    s = split_of(skip, [long, gen_rows(1, 0)[0]], tmp_path, "s")
    assert len(s) == 1 and s.skipped == [(1, "longer than model.max_length=48 tokens")]


def test_malformed_rows_name_the_missing_field(tiny_llama, tmp_path):
    from tunelab.errors import DataError

    task, _ = make_task(tiny_llama)
    with pytest.raises(DataError, match=r"row 2.*completion is missing"):
        split_of(task, [{"prompt": "a", "completion": "b"}, {"prompt": "c"}], tmp_path)


def test_chat_format_needs_a_chat_template(tiny_llama, tmp_path):
    with pytest.raises(ConfigError, match="needs a chat template.*has none"):
        make_task(tiny_llama, format="chat")


def test_chat_template_is_used_when_the_tokenizer_has_one(tiny_llama, tmp_path):
    import shutil

    folder = tmp_path / "chatty"
    shutil.copytree(tiny_llama, folder)
    cfg_path = folder / "tokenizer_config.json"
    conf = json.loads(cfg_path.read_text())
    conf["chat_template"] = (
        "{% for m in messages %}[CLS] {{ m['role'] }} {{ m['content'] }} [SEP] {% endfor %}"
        "{% if add_generation_prompt %}[CLS] assistant {% endif %}"
    )
    cfg_path.write_text(json.dumps(conf))
    task, _ = make_task(folder, format="chat")
    assert task.use_chat
    split = split_of(
        task,
        [
            {
                "messages": [
                    {"role": "user", "content": "the movie"},
                    {"role": "assistant", "content": "good fun"},
                ]
            }
        ],
        tmp_path,
    )
    text = task.tokenizer.decode(split.features[0]["input_ids"])
    assert text.startswith("[CLS] user the movie [SEP] [CLS] assistant good fun")
    off, _ = make_task(folder, chat_template="off")
    assert not off.use_chat


def test_templates_are_seeded_per_row_and_vary(tiny_llama, tmp_path):
    from tunelab.data.templates import TEMPLATES, render

    row = {"document": "A long article.", "summary": "Short."}
    a = [render("summarization", row, {}, 0, i)[0] for i in range(40)]
    b = [render("summarization", row, {}, 0, i)[0] for i in range(40)]
    assert a == b and len(set(a)) == len(TEMPLATES["summarization"][2])
    p, ref = render(
        "qa",
        {
            "c": "Paris is in France.",
            "q": "Where is Paris?",
            "answers": {"text": ["France", "in France"]},
        },
        {"context": "c", "question": "q", "answer": "answers.text"},
        0,
        1,
    )
    assert "Paris is in France." in p and ref == ["France", "in France"]
    with pytest.raises(ConfigError, match="task.template.*allowed: sentiment"):
        load_config({"task": {"type": "generation", "format": "template", "template": "nope"}})


@pytest.mark.parametrize("family", ["tiny_llama", "tiny_t5", "tiny_bart"])
def test_training_learns_the_answers(request, family, gen_data, tmp_path, monkeypatch, capsys):
    import tunelab

    folder = request.getfixturevalue(family)
    cfg = tiny_config(
        folder,
        gen_data,
        tmp_path / "runs",
        **{
            "task.type": "generation",
            "task.format": "prompt_completion",
            "task.metrics": ["exact_match", "rouge"],
            "task.max_new_tokens": 4,
            "training.max_steps": 150,
            "training.lr": 1e-2,
            "training.eval_before": True,
            "training.eval_every": 150,
            "model.max_length": 32,
        },
    )
    res = tunelab.train(cfg)
    assert res.metrics["loss"] < 0.5 * res.before["loss"]
    assert res.metrics["exact_match"] >= 90.0 > res.before["exact_match"]
    preds = [json.loads(x) for x in (res.run_dir / "predictions" / "validation.jsonl").open()]
    assert {"prompt", "reference", "prediction"} <= set(preds[0])
    # the zero-shot predictions are kept too, and rescore to the reported figure
    from tunelab.evaluation.generation_metrics import score

    zero = [json.loads(x) for x in (res.run_dir / "predictions" / "validation_before.jsonl").open()]
    again = score(["exact_match"], [r["prediction"] for r in zero], [r["reference"] for r in zero])
    assert again["exact_match"] == pytest.approx(res.before["exact_match"])
    # the finished run generates through the CLI
    from tunelab.cli import main

    prompt = "the movie was great"
    capsys.readouterr()
    assert main(["generate", str(res.run_dir), "--prompt", prompt, "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.strip() == "good fun"
    beams = tunelab.generate(res.run_dir, [prompt, "a dull film"], num_beams=3, max_new_tokens=4)
    assert beams == ["good fun", "bad dull"]
    torch.manual_seed(0)
    sampled = tunelab.generate(res.run_dir, [prompt], do_sample=True, temperature=0.7)
    torch.manual_seed(0)
    again = tunelab.generate(res.run_dir, [prompt], do_sample=True, temperature=0.7)
    tok = tunelab.load_run(res.run_dir).task.tokenizer
    assert sampled == again  # seeded sampling repeats, and stays within max_new_tokens
    assert len(tok(sampled[0], add_special_tokens=False)["input_ids"]) <= 4
    # an interactive chat: two turns, then an empty line ends it
    lines = iter(["the film was lovely", "it was awful", ""])
    monkeypatch.setattr("builtins.input", lambda _prompt="": next(lines))
    assert main(["chat", str(res.run_dir), "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.count("model> ") == 2


@pytest.mark.parametrize("family", ["tiny_llama", "tiny_t5"])
@pytest.mark.parametrize("method", ["lora", "dora", "ia3", "adapter", "prefix", "prompt"])
def test_every_method_trains_and_generates(request, family, method, gen_data, tmp_path):
    import tunelab

    folder = request.getfixturevalue(family)
    cfg = tiny_config(
        folder,
        gen_data,
        tmp_path / "runs",
        method=method,
        **{
            "task.type": "generation",
            "task.format": "prompt_completion",
            "task.metrics": ["exact_match"],
            "task.max_new_tokens": 3,
            "training.max_steps": 30,
            "training.lr": 0.2 if method == "ia3" else 3e-2,
            "training.eval_before": True,
            "training.eval_every": 30,
            "model.max_length": 32,
        },
    )
    res = tunelab.train(cfg)
    assert res.metrics["loss"] < 0.99 * res.before["loss"]  # a frozen random base learns slowly
    # the saved run reloads and generates (prefix/prompt through their own generate)
    out = tunelab.generate(res.run_dir, ["the movie was great"], max_new_tokens=3)
    assert len(out) == 1 and isinstance(out[0], str)
    again = tunelab.evaluate(res.run_dir)
    assert again["loss"] == pytest.approx(res.metrics["loss"], abs=1e-4)


def test_metrics_match_their_reference_implementations():
    import sacrebleu
    from rouge_score import rouge_scorer

    from tunelab.evaluation.generation_metrics import score

    preds = ["The cat sat on the mat.", "A quick brown fox jumps.", "Paris"]
    refs = ["The cat was sitting on the mat.", "The quick brown fox jumped over it.", "Paris"]
    got = score(["rouge", "bleu", "chrf", "exact_match"], preds, refs)
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score)
    assert got["chrf"] == pytest.approx(sacrebleu.corpus_chrf(preds, [refs]).score)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    mean_l = sum(scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)) / 3
    assert got["rougeL"] == pytest.approx(100 * mean_l, abs=1e-6)
    assert got["exact_match"] == pytest.approx(100 / 3)
    # SQuAD v1.1 rules: case, punctuation and articles are ignored; best over the answers
    sq = score(
        ["squad"],
        ["The Eiffel Tower!", "in 1889", "no idea"],
        [["Eiffel Tower"], ["1889", "in 1889 AD"], ["Gustave Eiffel"]],
    )
    assert sq["squad_em"] == pytest.approx(100 / 3)  # only the first matches exactly
    # F1: 1.0; "in 1889" vs "in 1889 AD": P = 1, R = 2/3 -> 0.8 (better than vs "1889"); 0.0
    assert sq["squad_f1"] == pytest.approx(100 * 1.8 / 3)
    f1 = score(["squad"], ["the big red barn"], [["red barn door"]])["squad_f1"]
    assert f1 == pytest.approx(100 * 2 * (2 / 3 * 2 / 3) / (4 / 3))  # P = R = 2/3


def test_domain_text_is_blocked_and_scored_before_and_after(tiny_llama, tmp_path):
    import tunelab
    from helpers import FILLER, POSITIVE

    domain = [{"document": " ".join(FILLER[i % 9 : i % 9 + 6] + POSITIVE[:3])} for i in range(60)]
    general = [{"text": " ".join(reversed(FILLER[:12]))}, {"text": ""}] * 10
    data = {
        "train": write_jsonl(tmp_path / "d" / "train.jsonl", domain),
        "test": write_jsonl(tmp_path / "d" / "general.jsonl", general),
    }
    cfg = tiny_config(
        tiny_llama,
        data,
        tmp_path / "runs",
        **{
            "task.type": "generation",
            "task.format": "text",
            "task.fields": {"text": "document|text"},
            "task.packing": True,
            "model.max_length": 24,
            "data.test": str(data["test"]),
            "training.max_steps": 40,
            "training.lr": 1e-2,
            "training.eval_before": True,
        },
    )
    res = tunelab.train(cfg)
    info = json.loads((res.run_dir / "run.json").read_text())
    before_test = info["summary"]["before_test"]
    # the domain's held-out text gets much likelier; every block is full except the last
    assert res.metrics["perplexity"] < 0.5 * res.before["perplexity"]
    assert {"perplexity", "word_perplexity", "bits_per_byte"} <= set(before_test)
    assert res.test_metrics["perplexity"] != pytest.approx(before_test["perplexity"])
    assert (res.run_dir / "eval" / "test_before.json").is_file()


def test_activation_checkpointing_gives_the_same_training(
    tiny_llama, gen_data, tmp_path, monkeypatch
):
    from transformers import PreTrainedModel

    import tunelab

    enabled = []
    original = PreTrainedModel.activation_checkpointing_enable

    def spy(self, *a, **kw):
        enabled.append(type(self).__name__)
        return original(self, *a, **kw)

    monkeypatch.setattr(PreTrainedModel, "activation_checkpointing_enable", spy)
    losses = {}
    for ckpt in (False, True, "selective"):
        cfg = tiny_config(
            tiny_llama,
            gen_data,
            tmp_path / f"runs{ckpt}",
            method="lora",
            **{
                "task.type": "generation",
                "task.format": "prompt_completion",
                "training.max_steps": 5,
                "training.activation_checkpointing": ckpt,
                "model.max_length": 32,
            },
        )
        losses[ckpt] = tunelab.train(cfg).metrics["loss"]
    assert enabled == ["LlamaForCausalLM"] * 2  # switched on for the second and third runs
    assert losses[True] == pytest.approx(losses[False], abs=1e-5)
    assert losses["selective"] == pytest.approx(losses[False], abs=1e-5)


@pytest.mark.parametrize("method", ["prefix", "prompt", "adapter", "ia3"])  # Llama: no bitfit
def test_checkpointing_trains_every_method_alike(tiny_llama, gen_data, tmp_path, method):
    """Recomputation reruns each layer's forward: methods that act inside the layers (prefix
    keys/values, adapters, IA3 scales) must see the same state then, or the losses drift."""
    import tunelab

    losses = {}
    for ckpt in ("none", "selective", "full"):
        cfg = tiny_config(
            tiny_llama,
            gen_data,
            tmp_path / ckpt,
            method=method,
            **{
                "task.type": "generation",
                "task.format": "prompt_completion",
                "training.max_steps": 3,
                "training.activation_checkpointing": ckpt,
                "training.eval_every": 100,
                "model.max_length": 32,
            },
        )
        losses[ckpt] = tunelab.train(cfg).metrics["loss"]
    assert losses["selective"] == pytest.approx(losses["none"], abs=1e-5)
    assert losses["full"] == pytest.approx(losses["none"], abs=1e-5)


def test_selective_checkpointing_keeps_matmuls_and_recomputes_the_rest(tiny_llama):
    """In the backward pass, selective checkpointing recomputes element-wise ops and LoRA's
    rank-r products but no full-width matmul (full checkpointing redoes those too); the
    gradients are those of no checkpointing."""
    from collections import Counter

    from peft import LoraConfig, get_peft_model
    from torch.utils._python_dispatch import TorchDispatchMode
    from transformers import AutoModelForCausalLM

    from tunelab.config import load_config
    from tunelab.training.recompute import enable_checkpointing

    cfg = load_config({"training": {"activation_checkpointing": False}})
    assert cfg.training.activation_checkpointing == "none"
    with pytest.raises(Exception, match="activation_checkpointing"):
        load_config({"training": {"activation_checkpointing": "some"}})

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.mm.default:
                self.seen[("mm", args[0].shape[-1])] += 1
            elif func is torch.ops.aten.silu.default:
                self.seen[("silu",)] += 1
            return func(*args, **(kwargs or {}))

    ids = torch.randint(5, 100, (2, 24), generator=torch.Generator().manual_seed(0))
    out = {}
    for mode in ("none", "selective", "full"):
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_pretrained(tiny_llama)
        if mode != "none":
            enable_checkpointing(base, mode)
        else:  # as checkpointing does: the same backward graph, bar the recomputation
            base.enable_input_require_grads()
        model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear"))
        model.train()
        loss = model(input_ids=ids, labels=ids).loss
        with Ops() as ops:
            loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        out[mode] = (loss.item(), ops.seen, grads)
    layers, hidden = base.config.num_hidden_layers, base.config.hidden_size
    # selective redoes each layer's SiLU and LoRA up-projections (inner dimension r=4): 6 of
    # its 7, as recomputation stops once nothing later is needed (down_proj's is only added)
    assert out["selective"][1] - out["none"][1] == Counter(
        {("mm", 4): 6 * layers, ("silu",): layers}
    )
    assert (out["full"][1] - out["none"][1])[("mm", hidden)] > 0  # full redoes q/k/v/gate/up
    for mode in ("selective", "full"):
        assert out[mode][0] == pytest.approx(out["none"][0], abs=1e-6)
        assert out[mode][2].keys() == out["none"][2].keys()
        for n, g in out["none"][2].items():
            assert torch.allclose(out[mode][2][n], g, atol=1e-6), n


def test_template_labels_from_text_cells_map_to_names(tiny_llama, tmp_path):
    from helpers import write_csv

    cfg = load_config(
        {
            "model": {"name": str(tiny_llama), "max_length": 256},
            "data": {"labels": ["negative", "positive"]},
            "task": {"type": "generation", "format": "template", "template": "sentiment"},
        }
    )
    task = GenerationTask.from_config(cfg, None, load_tokenizer(resolve_model(str(tiny_llama))))
    path = write_csv(
        tmp_path / "s.tsv",
        [{"text": "a good film", "label": "1"}, {"text": "a bad film", "label": 0}],
        "\t",
    )
    split = task.table_to_split(read_table(str(path)), "x")
    assert [r["reference"] for r in split.records] == ["positive", "negative"]
    bad = write_csv(tmp_path / "b.tsv", [{"text": "a film", "label": "7"}], "\t")
    with pytest.raises(Exception, match="label 7 is not an index"):
        task.table_to_split(read_table(str(bad)), "y")


def test_single_token_choices_share_one_row_and_match_per_choice_scoring(tiny_llama):
    """One-token choices are read off one forward of the prompt; the sums equal a direct
    computation, also when the batch mixes prompt lengths and multi-token choices."""
    from transformers import AutoModelForCausalLM

    from tunelab.evaluation.choice import choice_loglikelihoods

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    prompts = [[5, 9, 11, 3], [7, 2], [4, 4, 8, 15, 16, 23, 42], [6, 1, 2]]
    options = [[[17], [19]], [[17], [19], [21]], [[17], [19, 20]], [[30], [31]]]
    got = choice_loglikelihoods(model, prompts, options, 0, 3, "cpu")
    with torch.no_grad():
        for p, opts, scores in zip(prompts, options, got):
            for o, score in zip(opts, scores):
                logp = model(torch.tensor([p + o])).logits.log_softmax(-1)[0]
                want = sum(float(logp[len(p) - 1 + k, t]) for k, t in enumerate(o))
                assert score == pytest.approx(want, abs=1e-4)


def test_length_batches_cap_padding_and_cover_every_row_once():
    from tunelab.evaluation.choice import length_batches

    widths = [100, 95, 91, 89, 50, 49, 48, 47, 46, 10]
    batches = list(length_batches(widths, 3))
    # longest first; 89 < 0.9 * 100 starts a batch; 47 would be the fourth row
    assert batches == [[0, 1, 2], [3], [4, 5, 6], [7, 8], [9]]
    assert sorted(k for b in batches for k in b) == list(range(len(widths)))
    for b in batches:
        assert min(widths[k] for k in b) >= 0.9 * max(widths[k] for k in b)
    assert list(length_batches(widths, 4, min_fill=0)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert list(length_batches([], 4)) == []


def test_choice_scoring_matches_a_direct_computation(tiny_llama, tmp_path):
    from transformers import AutoModelForCausalLM

    from tunelab.evaluation.choice import choice_loglikelihoods, choice_metrics

    task, _ = make_task(tiny_llama, metrics=["choice"], choices=["good fun", "bad dull"])
    rows = gen_rows(6, 5)
    split = split_of(task, rows, tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    f = split.features[0]
    prompt = f["input_ids"][: f["prompt_len"]]
    tok = task.tokenizer
    opts = [
        tok("good fun", add_special_tokens=False)["input_ids"],
        tok("bad dull", add_special_tokens=False)["input_ids"],
    ]
    got = choice_loglikelihoods(model, [prompt], [opts], tok.pad_token_id, 4, "cpu")[0]
    with torch.no_grad():
        for o, score in zip(opts, got):
            logp = model(torch.tensor([prompt + o])).logits.log_softmax(-1)[0]
            want = sum(float(logp[len(prompt) - 1 + k, t]) for k, t in enumerate(o))
            assert score == pytest.approx(want, abs=1e-4)
    # acc vs acc_norm: a longer choice can win once divided by its byte length
    m = choice_metrics([[-3.0, -4.0]], [["ab", "abcdefgh"]], [1])
    assert m == {"acc": 0.0, "acc_norm": 100.0}
    # through evaluation: rows carry the chosen option; gold comes from the reference
    from accelerate import Accelerator

    metrics, out = task.evaluate(model, split, 4, Accelerator(cpu=True))
    assert {"acc", "acc_norm"} <= set(metrics)
    assert all(r["choice"] in ("good fun", "bad dull") for r in out)
    hits = sum(r["choice"] == r["reference"] for r in out)
    assert metrics["acc"] == pytest.approx(100 * hits / len(out))
    with pytest.raises(ConfigError, match="task.metrics has choice: give the options"):
        load_config({"task": {"type": "generation", "metrics": ["choice"]}})


def test_selective_policy_keeps_wide_matmuls_and_redoes_attention_with_dropout():
    from torch.utils.checkpoint import CheckpointPolicy as P

    from tunelab.config import load_config
    from tunelab.training.recompute import _policy

    policy, aten = _policy(), torch.ops.aten
    x = lambda *s: torch.empty(*s)  # noqa: E731
    assert policy(None, aten.mm.default, x(4, 768), x(768, 3072)) == P.MUST_SAVE  # GPT-2 MLP up
    assert policy(None, aten.mm.default, x(4, 32), x(32, 64)) == P.MUST_SAVE  # narrow model
    assert policy(None, aten.mm.default, x(4, 8), x(8, 768)) == P.PREFER_RECOMPUTE  # LoRA's B
    assert policy(None, aten.addmm.default, x(768), x(4, 8), x(8, 768)) == P.PREFER_RECOMPUTE
    assert policy(None, aten.mul.Tensor, x(4), x(4)) == P.PREFER_RECOMPUTE
    sdpa = aten._scaled_dot_product_flash_attention_for_cpu.default
    q = x(1, 2, 4, 8)
    assert policy(None, sdpa, q, q, q) == P.MUST_SAVE
    assert policy(None, sdpa, q, q, q, 0.1) == P.PREFER_RECOMPUTE  # its random draws recur
    assert policy(None, sdpa, q, q, q, dropout_p=0.1) == P.PREFER_RECOMPUTE
    for value, mode in (("true", "full"), (1, "full"), (0, "none"), ("Selective", "selective")):
        cfg = load_config({"training": {"activation_checkpointing": value}})
        assert cfg.training.activation_checkpointing == mode
