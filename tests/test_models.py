"""Model resolution and loading: embedded registry, local folders, GGUF cache, hub ids offline."""

from __future__ import annotations

import time

import pytest

from tunelab.cli import main
from tunelab.errors import ModelError
from tunelab.models.registry import EMBEDDED, list_models, resolve_model


def test_embedded_names_and_aliases_resolve():
    r = resolve_model("minilm-l6")
    assert r.source == "embedded" and r.path.endswith("model")
    assert resolve_model("all-MiniLM-L6-v2").name == "minilm-l6"
    s = resolve_model("smollm2")
    assert s.source == "gguf" and s.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_local_folder_and_bad_paths(tiny_bert, tmp_path):
    assert resolve_model(str(tiny_bert)).source == "local"
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(ModelError, match="model path not found"):
        resolve_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelError, match="unknown model 'not a model!'.*embedded name"):
        resolve_model("not a model!")


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    from tunelab.models.loading import load_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = resolve_model("some-org/some-model-not-cached")
    assert r.source == "hub"
    with pytest.raises(ModelError, match="hub cannot be reached \\(offline\\)"):
        load_tokenizer(r)


def test_models_command_lists_embedded(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in EMBEDDED:
        assert name[:12] in out
    assert {m["name"] for m in list_models()} == set(EMBEDDED)


def test_remote_code_is_off_by_default():
    from tunelab.config import RunConfig

    assert RunConfig().model.trust_remote_code is False


@pytest.mark.integration
def test_gguf_converts_once_then_loads_from_cache(tmp_path, monkeypatch):
    """The embedded SmolLM2 GGUF: converted to safetensors once, the second load is quick."""
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path / "cache"))
    from tunelab.models.loading import load_model, load_tokenizer
    from tunelab.models.registry import gguf_cache_path

    r = resolve_model("smollm2-135m-instruct")
    t0 = time.perf_counter()
    tok = load_tokenizer(r)
    first = time.perf_counter() - t0
    cached = gguf_cache_path(r)
    assert (cached / "model.safetensors").is_file() and (cached / "config.json").is_file()
    assert "quantization_config" not in (cached / "config.json").read_text()
    stamp = (cached / "model.safetensors").stat().st_mtime_ns

    import tunelab.utils.io

    def no_conversion(*a, **k):
        raise AssertionError("converted again instead of using the cache")

    monkeypatch.setattr(tunelab.utils.io, "atomic_directory", no_conversion)
    t0 = time.perf_counter()
    model = load_model(r, "AutoModelForCausalLM")
    second = time.perf_counter() - t0
    assert (cached / "model.safetensors").stat().st_mtime_ns == stamp
    assert model.config.model_type == "llama" and not getattr(model, "is_quantized", False)
    assert sum(p.numel() for p in model.parameters()) > 100e6
    assert tok.chat_template is not None
    print(f"GGUF first load {first:.1f}s, cached load {second:.1f}s")
