"""Evaluation's chunked LM head: the same per-token losses as the model's own logits, through
PEFT wrappers, and the plain path kept for a model whose logits are not ``head(hidden)``."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _llama(vocab: int = 5000):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(cfg).eval()


def _plain(model, ids, keep, target):
    import torch.nn.functional as F

    logits = model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits.float()
    return F.cross_entropy(
        logits.flatten(0, 1), target[:, keep].flatten(), reduction="none", ignore_index=-100
    )


def _batch(vocab: int, rows: int = 3, length: int = 40):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (rows, length), generator=g)
    target = ids[:, 1:].clone()
    target[0, :5] = -100  # a prompt: not scored
    keep = (target != -100).any(0).nonzero().flatten()
    return ids, keep, target


def test_chunked_nll_equals_the_models_own_logits():
    from tunelab.tasks.lm_scoring import head_chunked_nll

    model = _llama()
    ids, keep, target = _batch(5000)
    with torch.inference_mode():
        mine = head_chunked_nll(model, {"input_ids": ids}, keep, target)
        theirs = _plain(model, ids, keep, target)
    assert mine is not None and mine.shape == theirs.shape == (3 * keep.numel(),)
    assert torch.allclose(mine, theirs, atol=1e-5)
    assert float(mine[:5].sum()) == 0.0  # ignored positions score 0, as cross_entropy's


def test_chunked_nll_through_a_lora_on_the_head():
    from peft import LoraConfig, get_peft_model

    from tunelab.tasks.lm_scoring import head_chunked_nll

    model = get_peft_model(
        _llama(), LoraConfig(r=4, target_modules=["q_proj", "lm_head"], init_lora_weights=False)
    ).eval()
    ids, keep, target = _batch(5000)
    with torch.inference_mode():
        mine = head_chunked_nll(model, {"input_ids": ids}, keep, target)
        theirs = _plain(model, ids, keep, target)
        with model.disable_adapter():
            base = _plain(model, ids, keep, target)
    assert mine is not None and torch.allclose(mine, theirs, atol=1e-5)
    assert not torch.allclose(theirs, base, atol=1e-3)  # the head's LoRA counts


def test_a_model_with_scaled_logits_keeps_the_plain_path():
    from tunelab.tasks.lm_scoring import head_chunked_nll

    model = _llama()
    # logits that are not head(hidden), as Gemma's soft-cap or Cohere's logit scale make them
    model.register_forward_hook(lambda _m, _a, out: out.__setitem__("logits", out.logits * 2.0))
    ids, keep, target = _batch(5000)
    with torch.inference_mode():
        assert head_chunked_nll(model, {"input_ids": ids}, keep, target) is None


def test_training_keeps_the_plain_path():
    from tunelab.tasks.lm_scoring import head_chunked_nll

    ids, keep, target = _batch(5000)
    assert head_chunked_nll(_llama(), {"input_ids": ids}, keep, target) is None


def test_eval_batches_keep_a_token_budget():
    from tunelab.data.batching import eval_batches

    lengths = [2049, 2049, 2049, 700, 300, 300, 300, 10, 2049, 5]
    batches = eval_batches(lengths, 8, max_tokens=4096)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) * lengths[b[0]] <= 4096 or len(b) == 1 for b in batches)
    assert [len(b) for b in batches] == [1, 1, 1, 1, 5, 1]  # 2049 > 4096 / 2: one at a time
    assert eval_batches(lengths, 8) == [[0, 1, 2, 8, 3, 4, 5, 6], [7, 9]]  # no budget: as before
    two = eval_batches([2048] * 4 + [100], 8, max_tokens=4096)
    assert [len(b) for b in two] == [2, 2, 1]
