"""The hand-written methods (adapter, prefix, prompt): correctness beyond the method matrix."""

from __future__ import annotations

import pytest
import torch

from test_methods import build

SHORT, LONG = "a good film", "the plot was dull and weak and the cast was very bad"


def logits_alone_and_padded(task, model):
    """Logits of SHORT scored alone and scored next to a longer (so padded) row."""
    model.eval()
    with torch.no_grad():
        alone = task._logits(model, task.collate(task.encode([SHORT])))
        both = task._logits(model, task.collate(task.encode([SHORT, LONG])))
    return alone[0], both[0]


def perturb(model):
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))


@pytest.mark.parametrize("family", ["tiny_bert", "tiny_llama", "tiny_bart", "tiny_t5"])
@pytest.mark.parametrize("method", ["prefix", "prompt", "adapter"])
def test_padding_does_not_change_a_prediction(request, family, method):
    # the widened attention masks must hide padding from real tokens and prefixes alike; a
    # decoder classifier must still read the last real token (PEFT's prompt tuning does not)
    task, _, model, _ = build(request.getfixturevalue(family), method)
    perturb(model)
    alone, padded = logits_alone_and_padded(task, model)
    assert torch.allclose(alone, padded, atol=1e-5)


def test_adapters_start_as_the_pretrained_model(tiny_bert):
    task, _, plain, _ = build(tiny_bert, "full")
    _, _, adapted, _ = build(tiny_bert, "adapter")
    b = task.collate(task.encode([SHORT, LONG]))
    plain.eval(), adapted.eval()
    with torch.no_grad():
        assert torch.allclose(task._logits(plain, b), task._logits(adapted, b), atol=1e-6)
    wrapped = [n for n, _ in adapted.named_modules() if n.endswith(".adapter_up")]
    assert len(wrapped) == 2 * 2  # houlsby: attention and feed-forward, in each of 2 layers
    _, _, pf, _ = build(tiny_bert, "adapter", adapter={"placement": "pfeiffer"})
    assert len([n for n, _ in pf.named_modules() if n.endswith(".adapter_up")]) == 2
    _, _, wide, _ = build(tiny_bert, "adapter", adapter={"reduction_factor": 4})
    assert wide.get_submodule("bert.encoder.layer.0.output.dense.adapter_down").out_features == 8


def test_prefix_keeps_a_decoder_causal(tiny_llama):
    # with a prefix, position t still sees only positions <= t (and the prefix)
    from tunelab.config import load_config
    from tunelab.methods import get_method
    from tunelab.models.loading import load_model, load_tokenizer
    from tunelab.models.registry import resolve_model

    r = resolve_model(str(tiny_llama))
    lm = load_model(r, "AutoModelForCausalLM")
    model = get_method("prefix").apply(lm, load_config({"method": "prefix"}), [], load_tokenizer(r))
    perturb(model)
    model.eval()
    a = torch.tensor([[5, 6, 7, 8, 9, 10]])
    b = a.clone()
    b[0, 4:] = torch.tensor([11, 12])
    with torch.no_grad():
        la, lb = model(input_ids=a).logits, model(input_ids=b).logits
    assert torch.allclose(la[0, :4], lb[0, :4], atol=1e-5)
    assert not torch.allclose(la[0, 4:], lb[0, 4:], atol=1e-3)
    # and the prefix changes what the model computes
    with torch.no_grad():
        base = model.base(input_ids=a, use_cache=False).logits
    assert not torch.allclose(base, la, atol=1e-3)


def test_prefix_projection_saves_only_the_prefixes(tiny_bert, tmp_path):
    task, m, model, r = build(
        tiny_bert, "prefix", prefix={"projection": True, "num_virtual_tokens": 5}
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"prefix_input", "prefix_mlp.0.weight", "prefix_mlp.2.weight"} <= trainable
    perturb(model)
    model.eval()
    b = task.collate(task.encode([SHORT, LONG]))
    ref = task._logits(model, b)
    m.save(model, tmp_path / "saved")
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "saved" / "method_weights.safetensors"))
    assert saved["prefix"].shape == (2, 2, 4, 5, 8)  # layers, k/v, heads, P, head dim
    assert not any(k.startswith("prefix_mlp") for k in saved)
    again = m.load(task.build_model(r), tmp_path / "saved").eval()
    assert torch.allclose(task._logits(again, b), ref, atol=1e-5)


def test_prompt_goes_after_the_cls_token(tiny_bert):
    _, m, model, _ = build(tiny_bert, "prompt", prompt={"num_virtual_tokens": 3})
    assert m.settings["insert_at"] == 1
    ids = torch.tensor([[2, 7, 8, 3]])
    assert model.expand("input_ids", ids)[0].tolist()[:1] == [2]
    assert model.expand("input_ids", ids).shape == (1, 7)
    assert model.expand("labels", ids)[0, 1:4].tolist() == [-100] * 3


def test_prompt_text_initialisation(tiny_bert):
    task, _, model, _ = build(
        tiny_bert, "prompt", prompt={"num_virtual_tokens": 4, "init_text": "good bad"}
    )
    ids = task.tokenizer("good bad", add_special_tokens=False)["input_ids"]
    emb = model.base.get_input_embeddings().weight
    assert torch.equal(model.prompt.data, emb[[ids[0], ids[1], ids[0], ids[1]]])


@pytest.mark.parametrize("method", ["adapter", "prefix", "prompt"])
def test_merge_says_why_it_cannot(tiny_bert, keyword_data, tmp_path, method, capsys):
    import tunelab
    from helpers import tiny_config
    from tunelab.cli import main

    cfg = tiny_config(
        tiny_bert, keyword_data, tmp_path / "runs", method=method, **{"training.max_steps": 2}
    )
    run = tunelab.train(cfg).run_dir
    assert main(["merge", str(run)]) == 2
    assert f"method {method} cannot be merged" in capsys.readouterr().err
    # the saved run reloads and predicts through tunelab
    rows = tunelab.predict(run, texts=[SHORT])
    assert set(rows[0]["probabilities"]) == {"negative", "positive"}
