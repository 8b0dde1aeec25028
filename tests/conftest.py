"""Shared fixtures: tiny randomly initialised models built from configs, and tiny datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import FILLER, NEGATIVE, NEUTRAL, POSITIVE, SPECIAL, keyword_files

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _tokenizer():
    from transformers import BertTokenizer

    vocab = (
        SPECIAL
        + sorted(set(FILLER + POSITIVE + NEGATIVE + NEUTRAL))
        + list("abcdefghijklmnopqrstuvwxyz")
    )
    vocab += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(dict.fromkeys(vocab))})
    tok.eos_token = "[SEP]"  # so that causal LMs built on it can end an answer
    return tok


TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
}


def _save_tiny(folder: Path, model_cls, config_cls, size: dict | None = None, **extra) -> Path:
    """Save a randomly initialised model of ``TINY`` size with the shared tokenizer."""
    import torch

    tok = _tokenizer()
    torch.manual_seed(0)
    cfg = config_cls(vocab_size=len(tok), **(TINY if size is None else size), **extra)
    model_cls(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT encoder (no task head) with a matching WordPiece tokenizer."""
    from transformers import BertConfig, BertModel

    return _save_tiny(tmp_path_factory.mktemp("tiny-bert"), BertModel, BertConfig)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A 2-layer Llama causal LM (no biases) with the same tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return _save_tiny(
        tmp_path_factory.mktemp("tiny-llama"),
        LlamaForCausalLM,
        LlamaConfig,
        num_key_value_heads=2,
        pad_token_id=0,
    )


@pytest.fixture
def keyword_data(tmp_path) -> dict[str, Path]:
    return keyword_files(tmp_path / "data")


@pytest.fixture(scope="session")
def tiny_bart(tmp_path_factory) -> Path:
    """A 2+2-layer BART encoder-decoder; [SEP] serves as its EOS, as the classifier needs."""
    from transformers import BartConfig, BartModel

    tok = _tokenizer()
    return _save_tiny(
        tmp_path_factory.mktemp("tiny-bart"),
        BartModel,
        BartConfig,
        size={
            "d_model": 32,
            "encoder_layers": 2,
            "decoder_layers": 2,
            "encoder_attention_heads": 4,
            "decoder_attention_heads": 4,
            "encoder_ffn_dim": 64,
            "decoder_ffn_dim": 64,
            "max_position_embeddings": 64,
        },
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
        decoder_start_token_id=tok.sep_token_id,
        forced_eos_token_id=tok.sep_token_id,
    )


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory) -> Path:
    """A 2+2-layer T5 encoder-decoder (relative position bias, no biases in its layers)."""
    from transformers import T5Config, T5Model

    tok = _tokenizer()
    return _save_tiny(
        tmp_path_factory.mktemp("tiny-t5"),
        T5Model,
        T5Config,
        size={"d_model": 32, "d_kv": 8, "num_layers": 2, "num_heads": 4, "d_ff": 64},
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.sep_token_id,
        decoder_start_token_id=tok.pad_token_id,
    )
