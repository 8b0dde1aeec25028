"""`tunelab compare`: train several methods on the same data and budget, side by side.

Each method runs in its own process (`tunelab train`), so that peak memory is its own; the
figures come from each run directory's run.json.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tunelab import rundir
from tunelab.config import load_config
from tunelab.errors import ConfigError, RunInterrupted, TunelabError
from tunelab.methods import method_names
from tunelab.utils.io import atomic_write_json, atomic_write_text

COLUMNS = (
    "method",
    "lr",
    "metric",
    "trainable_pct",
    "train_seconds",
    "examples_per_s",
    "peak_rss_mb",
    "saved_mb",
)


def parse_entry(entry: str) -> tuple[str, str, list[str]]:
    """``lora`` or ``lora@1e-3`` (the same method at its own learning rate) into
    (run label, method, overrides)."""
    method, _, lr = entry.partition("@")
    extra = [f"training.lr={lr}"] if lr else []
    return entry.replace("@", "-lr"), method, extra


def per_method_overrides(items: list[str] | None) -> dict[str, list[str]]:
    """``--set METHOD:key=value`` arguments as ``{method: [key=value, ...]}``."""
    out: dict[str, list[str]] = {}
    for item in items or []:
        method, sep, override = item.partition(":")
        if not sep or "=" not in override:
            raise ConfigError(f"--set {item!r}: expected METHOD:key=value")
        out.setdefault(method.strip(), []).append(override.strip())
    return out


def compare(
    config: str | os.PathLike,
    methods: list[str],
    overrides: list[str] | None = None,
    output_dir: str | os.PathLike | None = None,
    per_method: dict[str, list[str]] | None = None,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """Train ``config`` once per entry of ``methods``; write compare.json/.csv/.png; return rows.

    An entry is a method name, or ``METHOD@LR`` to run it at its own learning rate (list the
    same method at several rates to find its best); ``per_method`` maps a method to overrides
    that apply to its runs only (e.g. ``{"prefix": ["prefix.num_virtual_tokens=30"]}``).
    A stop signal (SIGINT, SIGTERM, SIGUSR1) goes to the run in progress, which stops with a
    checkpoint; ``resume`` then keeps the completed runs and continues the interrupted one.
    """
    entries = [parse_entry(e) for e in methods]
    unknown = [m for _, m, _ in entries if m not in method_names()]
    unknown += [m for m in (per_method or {}) if m not in method_names()]
    if unknown or not entries:
        raise ConfigError(
            f"--methods: unknown {unknown or '(none given)'}; allowed: {', '.join(method_names())}"
        )
    overrides = list(overrides or [])
    per_method = per_method or {}
    cfg = load_config(config, overrides)  # validate once, before any training starts
    for _label, method, extra in entries:
        load_config(config, [*overrides, *per_method.get(method, []), *extra, f"method={method}"])
    out = Path(output_dir or Path(cfg.output.dir) / f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and any(out.iterdir()) and not resume:
        raise TunelabError(f"{out} already exists; choose another --output, or pass --resume")
    out.mkdir(parents=True, exist_ok=True)
    tc = cfg.training  # training.report_to: the comparison's runs form one tracker group
    group = [f"training.tracker_group={out.name}"] if tc.report_to and not tc.tracker_group else []
    rows = []
    for label, method, extra in entries:
        done = out / label
        info = rundir.read_info(done) if rundir.is_run_dir(done) else None
        if info is None or info.get("status") != "completed":
            again = ["resume=auto"] if info is not None else []
            cmd = [
                sys.executable,
                "-m",
                "tunelab.cli",
                "train",
                str(config),
                *overrides,
                *per_method.get(method, []),
                *extra,
                f"method={method}",
                f"output.dir={out}",
                f"output.name={label}",
                "training.progress=false",
                *group,
                *again,
            ]
            code, err = _run_forwarding_signals(cmd)
            if code in (130, 143):
                raise RunInterrupted(
                    f"compare stopped during {label} ({err}); run the same command with "
                    "--resume to keep the finished runs and continue this one",
                    -1,
                    "SIGINT" if code == 130 else "SIGTERM",
                )
            if code != 0 or not rundir.is_run_dir(done):
                rows.append({"method": label, "error": err})
                continue
        rows.append(_row(label, done, cfg.training.metric))
    atomic_write_json(out / "compare.json", {"metric": cfg.training.metric, "rows": rows})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[*COLUMNS, "error"], extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "compare.csv", buf.getvalue())
    _plot(rows, cfg.training.metric, out / "compare.png")
    return rows


def _row(label: str, run_dir: Path, metric: str) -> dict[str, Any]:
    info = rundir.read_info(run_dir)
    used = load_config(run_dir / rundir.CONFIG)
    s = info["summary"]
    return {
        "method": label,
        "lr": used.training.lr,
        "metric": info["final"]["validation"].get(metric),
        "trainable_pct": info["parameters"]["trainable_pct"],
        "trainable": info["parameters"]["trainable"],
        "train_seconds": s["wall_seconds"],
        "examples_per_s": s["examples_per_s"],
        "peak_rss_mb": s["peak_rss_mb"],
        "saved_mb": info["saved_model_mb"],
    }


def _run_forwarding_signals(cmd: list[str]) -> tuple[int, str]:
    """Run a child `tunelab train`; a stop signal to this process goes to the child (which
    stops with a checkpoint). Returns its exit code and the last line it wrote to stderr."""
    import signal
    import tempfile

    with tempfile.TemporaryFile(mode="w+") as err:
        child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)

        def forward(signum, frame):
            if child.poll() is None:
                child.send_signal(signum)

        names = ("SIGINT", "SIGTERM", "SIGUSR1")
        old = {s: signal.signal(s, forward) for n in names if (s := getattr(signal, n, None))}
        try:
            code = child.wait()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        err.seek(0)
        lines = err.read().strip().splitlines()
    return code, (lines or ["(no output)"])[-1]


def _plot(rows: list[dict], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "error" not in r]
    if not ok:
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.scatter([r["trainable_pct"] for r in ok], [r["metric"] for r in ok])
    for r in ok:
        a.annotate(r["method"], (r["trainable_pct"], r["metric"]))
    a.set_xscale("log")
    a.set_xlabel("trainable parameters (%)")
    a.set_ylabel(f"validation {metric}")
    b.bar([r["method"] for r in ok], [r["examples_per_s"] for r in ok])
    b.set_ylabel("train examples / s")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
