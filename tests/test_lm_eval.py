"""tunelab's own scoring against lm-evaluation-harness, on the same tiny random causal LM.

Multiple choice (BoolQ-style prompts, lm-eval's target delimiter) must give the same per-row
log-likelihoods and choices; rolling per-document perplexity (WikiText-style) the same
perplexities. lm-eval runs through tunelab's backend (`--lm-eval`), so both see one model."""

from __future__ import annotations

import json
import random

import pytest
import yaml

from helpers import FILLER, NEGATIVE, POSITIVE

pytest.importorskip("lm_eval")

WORDS = FILLER + POSITIVE + NEGATIVE


@pytest.fixture(scope="module")
def bpe_llama(tmp_path_factory):
    """A tiny Llama with a byte-level BPE tokenizer that adds no special tokens (as GPT-2 and
    SmolLM2 tokenizers): the tokenization lm-eval's whole-string split is about."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rng = random.Random(0)
    corpus = [
        " ".join(rng.choice(WORDS) for _ in range(30)) + "?\nAnswer: yes no" for _ in range(200)
    ]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=400, min_frequency=1, special_tokens=["<|eot|>"])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<|eot|>",
        eos_token="<|eot|>",
        pad_token="<|eot|>",
    )
    folder = tmp_path_factory.mktemp("bpe-llama")
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = random.Random(1)
    tmp = tmp_path_factory.mktemp("lm-eval-data")
    boolq = [
        {
            "passage": " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 20))),
            "question": " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))),
            "answer": rng.random() < 0.5,
            "label": 0,
        }
        for _ in range(24)
    ]
    for r in boolq:
        r["label"] = int(r["answer"])
    docs = [
        {"text": " ".join(rng.choice(WORDS) for _ in range(n)) + " ."}
        for n in (5, 12, 30, 70, 140)  # from one window to several windows of 32 tokens
    ]
    for name, rows in (("boolq.jsonl", boolq), ("docs.jsonl", docs)):
        (tmp / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = tmp / "tasks"
    tasks.mkdir()
    (tasks / "tiny_boolq.yaml").write_text(
        yaml.safe_dump(
            {
                "task": "tiny_boolq",
                "dataset_path": "json",
                "dataset_kwargs": {"data_files": {"validation": str(tmp / "boolq.jsonl")}},
                "output_type": "multiple_choice",
                "validation_split": "validation",
                "doc_to_text": "{{passage}}\nQuestion: {{question}}?\nAnswer:",
                "doc_to_target": "label",
                "doc_to_choice": ["no", "yes"],
                "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
            }
        )
    )
    (tasks / "tiny_wiki.yaml").write_text(
        yaml.safe_dump(
            {
                "task": "tiny_wiki",
                "dataset_path": "json",
                "dataset_kwargs": {"data_files": {"test": str(tmp / "docs.jsonl")}},
                "output_type": "loglikelihood_rolling",
                "test_split": "test",
                "doc_to_text": "",
                "doc_to_target": "{{text}}",
                "metric_list": [
                    {"metric": "word_perplexity"},
                    {"metric": "byte_perplexity"},
                    {"metric": "bits_per_byte"},
                ],
            }
        )
    )
    suite = tmp / "suite.yaml"
    suite.write_text(
        yaml.safe_dump(
            {
                "name": "parity",
                "max_length": 32,
                "tasks": [
                    {
                        "name": "boolq",
                        "data": str(tmp / "boolq.jsonl"),
                        "task": {
                            "format": "prompt_completion",
                            "prompt": "{passage}\nQuestion: {question}?\nAnswer:",
                            "fields": {"completion": "answer"},
                            "chat_template": "off",
                            "metrics": ["choice"],
                            "choices": ["no", "yes"],
                        },
                    },
                    {
                        "name": "wiki",
                        "data": str(tmp / "docs.jsonl"),
                        "task": {"format": "text", "text_scoring": "document"},
                    },
                ],
            }
        )
    )
    return tmp, tasks, suite


def test_choices_and_rolling_perplexity_agree_with_lm_eval(bpe_llama, data, tmp_path, monkeypatch):
    from tunelab.workflows import lm_eval_backend
    from tunelab.workflows.lm_eval_backend import run_lm_eval
    from tunelab.workflows.suite import run_suite

    kept: list[bool] = []  # the allocator setting is process-wide: record the call instead
    monkeypatch.setattr(lm_eval_backend, "retain_freed_memory", lambda: kept.append(True))
    _tmp, tasks, suite = data
    ours = run_suite(str(bpe_llama), suite, output=tmp_path / "ours", precision="fp32")
    theirs, _ = run_lm_eval(
        str(bpe_llama),
        ["tiny_boolq", "tiny_wiki"],
        tasks,
        batch_size=4,
        output=tmp_path / "theirs",
        max_length=32,
        precision="fp32",
    )
    rows = [json.loads(x) for x in (tmp_path / "ours" / "suite-parity-boolq.jsonl").open()]
    ref = {r["doc_id"]: r for r in theirs["tasks"]["tiny_boolq"]["rows"]}
    assert len(rows) == len(ref) == 24
    for i, r in enumerate(rows):  # suite rows are in file order; lm-eval's doc_id is that order
        a, b = r["loglikelihoods"], ref[i]["loglikelihoods"]
        assert a == pytest.approx(b, abs=1e-4), (i, a, b)
        assert max(range(2), key=a.__getitem__) == max(range(2), key=b.__getitem__)
    # the same acc and acc_norm (percent) follow from the same log-likelihoods
    mine, lm = ours["tasks"]["boolq"]["clean"], theirs["tasks"]["tiny_boolq"]["clean"]
    assert mine["acc"] == pytest.approx(lm["acc"]) and mine["acc_norm"] == pytest.approx(
        lm["acc_norm"]
    )
    wiki, lw = ours["tasks"]["wiki"]["clean"], theirs["tasks"]["tiny_wiki"]["clean"]
    for key in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert wiki[key] == pytest.approx(lw[key], rel=5e-3), key
    assert wiki["n"] == 5  # documents, not windows
    # lm-eval's request time is timed apart from the rest of simple_evaluate
    assert 0 < theirs["request_seconds"] <= theirs["seconds"]
    assert kept == [True]  # run_lm_eval keeps freed memory unless told not to
    run_lm_eval(
        str(bpe_llama),
        ["tiny_boolq"],
        tasks,
        limit=2,
        output=tmp_path / "plain",
        precision="fp32",
        keep_freed_memory=False,
    )
    assert kept == [True]


def test_prompt_template_and_target_delimiter_shape_what_is_scored(bpe_llama):
    from tunelab.config import load_config
    from tunelab.models.loading import load_tokenizer
    from tunelab.models.registry import resolve_model
    from tunelab.tasks import build_task
    from tunelab.tasks.lm_scoring import encode_pair

    tok = load_tokenizer(resolve_model(str(bpe_llama)))
    cfg = load_config(
        {
            "model": {"name": str(bpe_llama)},
            "task": {
                "type": "generation",
                "format": "prompt_completion",
                "chat_template": "off",
                "prompt": "{passage}\nQuestion: {question}?\nAnswer:",
                "fields": {"completion": "answer"},
                "target_delimiter": " ",
            },
        }
    )
    task = build_task(cfg, tok)
    ex = task._example({"passage": "the film", "question": "was it good", "answer": True}, 1)
    assert ex.prompt == "the film\nQuestion: was it good?\nAnswer:" and ex.response == "yes"
    # no implicit newline: the prompt as written, the answer after the delimiter
    assert task.prompt_ids(ex.prompt) == tok(ex.prompt)["input_ids"]
    assert task.response_ids("yes") == [*tok(" yes", add_special_tokens=False)["input_ids"], 0]
    # lm-eval's split: the whole string tokenized, then cut at the context's length; a trailing
    # space of the context moves to the continuation
    ctx, cont = encode_pair(tok, "Answer: ", "yes")
    assert ctx == tok("Answer:")["input_ids"]
    assert ctx + cont == tok("Answer: yes")["input_ids"]
