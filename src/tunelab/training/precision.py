"""Devices and precision: the Accelerator of a run, and what ``training.precision`` means here."""

from __future__ import annotations

from tunelab.errors import ConfigError


def choose_precision(requested: str) -> str:
    """Accelerate's mixed_precision value for ``training.precision``."""
    import torch

    cuda = torch.cuda.is_available()
    if requested == "fp32":
        return "no"
    if requested == "fp16":
        if not cuda:
            raise ConfigError("training.precision=fp16 needs a CUDA GPU; use bf16 or fp32 on CPU")
        return "fp16"
    bf16_ok = torch.cuda.is_bf16_supported() if cuda else cpu_bf16()
    if requested == "bf16":
        if not bf16_ok and cuda:
            raise ConfigError(
                "training.precision=bf16: this GPU has no bf16 support; use fp16 or fp32"
            )
        return "bf16"
    return "bf16" if bf16_ok else "no"


def cpu_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX).

    torch's own check (``mkldnn._is_mkldnn_bf16_supported``) also says yes for plain AVX-512,
    where bf16 matmuls are emulated: measured 60 GFLOP/s against 240 in fp32 on such a CPU.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    except OSError:
        pass
    return False


def precision_name(accelerator) -> str:
    """Accelerate's ``mixed_precision`` as a user reads it (``no`` is fp32)."""
    mp = str(accelerator.mixed_precision)
    return "fp32" if mp == "no" else mp


def make_accelerator(cfg):
    """The Accelerator of a run: its precision, and MULTI_CPU (gloo) under torchrun on CPUs."""
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    # With no accelerator device, cpu=True lets Accelerate set up MULTI_CPU (gloo) under
    # torchrun / `accelerate launch --num_processes N`; otherwise each process runs alone.
    has_device = (
        torch.accelerator.is_available()
        if hasattr(torch, "accelerator")
        else torch.cuda.is_available()
    )
    mixed = choose_precision(cfg.training.precision)
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", mixed) != mixed and state.get("num_processes") == 1:
        # One process that runs several configs in turn (the Python API, tests): Accelerate
        # keeps the first precision of a process and refuses another, so start afresh.
        AcceleratorState._reset_state()
    # training.report_to: Accelerate's trackers; their folder is set once the run dir is known
    report = list(cfg.training.report_to) or None
    return Accelerator(
        mixed_precision=mixed,
        cpu=not has_device,
        log_with=report,
        project_dir=cfg.output.dir if report else None,
    )
