"""Load tokenizers and models for a resolved name, mapping library failures to clear errors."""

from __future__ import annotations

import logging
import os
import pickle
import time
from pathlib import Path
from typing import Any

from tunelab.errors import ModelError
from tunelab.models.registry import ResolvedModel, available_hint, gguf_cache_path

log = logging.getLogger("tunelab")


def quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def convert_gguf(resolved: ResolvedModel) -> Path:
    """Dequantise a GGUF file once into a cached transformers folder (safetensors); return it."""
    target = gguf_cache_path(resolved)
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.utils.io import atomic_directory

    src = Path(resolved.path)
    t0 = time.perf_counter()
    log.info("converting %s to safetensors (once; cached in %s)", resolved.gguf_file, target)
    try:
        tok = AutoTokenizer.from_pretrained(src, gguf_file=resolved.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(src, gguf_file=resolved.gguf_file)
    except ImportError as e:
        raise ModelError(f"loading GGUF needs the `gguf` package: pip install gguf ({e})") from None
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"cannot read GGUF file {src / str(resolved.gguf_file)}: {e}") from None
    # The weights are dequantised to fp32: they are ordinary weights now. Clear the GGUF
    # quantization marker so that saving and training treat them as such.
    model.config.__dict__.pop("quantization_config", None)
    model.hf_quantizer = None
    model.is_quantized = False
    with atomic_directory(target) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    log.info("converted in %.1f s", time.perf_counter() - t0)
    return target


def model_path(resolved: ResolvedModel) -> str:
    """A path or hub id that ``from_pretrained`` accepts (GGUF converted and cached first)."""
    if resolved.source == "gguf":
        return str(convert_gguf(resolved))
    return resolved.path


def _hub_kwargs(resolved: ResolvedModel, trust_remote_code: bool) -> dict[str, Any]:
    kw: dict[str, Any] = {"trust_remote_code": bool(trust_remote_code)}
    if resolved.source == "hub" and resolved.revision:
        kw["revision"] = resolved.revision
    return kw


def _wrap_load_error(resolved: ResolvedModel, e: Exception) -> ModelError:
    text = str(e)
    if "custom code" in text or "trust_remote_code" in text:
        return ModelError(
            f"model {resolved.name!r} needs its own code to load; tunelab runs it only when you "
            "set model.trust_remote_code=true (or pass --trust-remote-code) and trust its source"
        )
    if resolved.source == "hub":
        offline = os.environ.get("HF_HUB_OFFLINE") in {"1", "true", "True"} or any(
            s in text
            for s in (
                "offline",
                "couldn't connect",
                "Connection",
                "resolve",
                "Max retries",
                "not reach",
            )
        )
        if offline:
            return ModelError(
                f"model {resolved.name!r} is a hub id but the hub cannot be reached (offline) and it "
                f"is not in the local cache; {available_hint()}"
            )
        if "trust_remote_code" in text:
            return ModelError(
                f"model {resolved.name!r} needs its own code; set model.trust_remote_code=true "
                "only if you trust it"
            )
        return ModelError(f"cannot load hub model {resolved.name!r}: {text.splitlines()[0]}")
    return ModelError(
        f"cannot load model {resolved.name!r} from {resolved.path}: {text.splitlines()[0]}"
    )


def load_tokenizer(resolved: ResolvedModel, trust_remote_code: bool = False):
    """Load the tokenizer; give it a pad token (EOS) when it has none."""
    quiet_transformers()
    from transformers import AutoTokenizer

    path = model_path(resolved)
    try:
        tok = AutoTokenizer.from_pretrained(path, **_hub_kwargs(resolved, trust_remote_code))
    except (OSError, ValueError) as e:
        raise _wrap_load_error(resolved, e) from None
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ModelError(f"tokenizer of {resolved.name!r} has neither a pad nor an EOS token")
        tok.pad_token = tok.eos_token
    return tok


def load_model(resolved: ResolvedModel, auto_class: str, trust_remote_code: bool = False, **kwargs):
    """``transformers.<auto_class>.from_pretrained`` with tunelab's error handling, in fp32.

    With ``output_loading_info=True`` it returns ``(model, info)`` as transformers does
    (``info["missing_keys"]``: the newly initialised parameters)."""
    quiet_transformers()
    import torch
    import transformers

    cls = getattr(transformers, auto_class)
    path = model_path(resolved)
    try:
        return cls.from_pretrained(
            path, dtype=torch.float32, **_hub_kwargs(resolved, trust_remote_code), **kwargs
        )
    except pickle.UnpicklingError as e:
        raise ModelError(
            f"refused to load {resolved.name!r}: its weights are a pickle that needs code to run "
            f"({str(e).splitlines()[-1].strip() or 'unsafe pickle'}); use safetensors weights"
        ) from None
    except (OSError, ValueError, KeyError) as e:
        if "Unrecognized configuration class" in str(e) or "does not support" in str(e):
            raise ModelError(
                f"model {resolved.name!r} cannot be loaded as {auto_class}: {str(e).splitlines()[0]}"
            ) from None
        raise _wrap_load_error(resolved, e) from None
