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
    return BertTokenizer(vocab={w: i for i, w in enumerate(dict.fromkeys(vocab))})


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT encoder (no task head) with a matching WordPiece tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    d = tmp_path_factory.mktemp("tiny-bert")
    tok = _tokenizer()
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A 2-layer Llama causal LM (no biases) with the same tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    d = tmp_path_factory.mktemp("tiny-llama")
    tok = _tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    LlamaForCausalLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture
def keyword_data(tmp_path) -> dict[str, Path]:
    return keyword_files(tmp_path / "data")
