"""The ``classifier:RUN_DIR[:LABEL]`` suite metric: a finished tunelab classification run scores
the texts a suite task generates (e.g. a toxicity classifier on a language model's answers).

The run is loaded once per process (:func:`load_classifier` caches it); the aggregation itself
is :func:`tunelab.evaluation.generation_metrics.label_shares`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab import rundir
from tunelab.errors import ConfigError
from tunelab.evaluation.generation_metrics import label_shares
from tunelab.workflows.runs import LoadedRun, load_run

PREFIX = "classifier:"
_CACHE: dict[tuple[str, str | None], LoadedRun] = {}


@dataclass
class ClassifierMetric:
    """One parsed ``classifier:`` entry: the run directory and the chosen labels (maybe none)."""

    spec: str
    run_dir: Path
    chosen: list[str]

    @property
    def name(self) -> str:
        return self.run_dir.name


def is_classifier_metric(name: Any) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def parse_classifier_metric(spec: str, base_dir: Path | None = None) -> ClassifierMetric:
    """``classifier:RUN_DIR`` or ``classifier:RUN_DIR:LABEL[+LABEL...]``; a relative RUN_DIR is
    read from ``base_dir`` (a suite's folder). Labels are checked when the run is loaded."""
    rest = spec[len(PREFIX) :].strip()
    if not rest:
        raise ConfigError(f"{spec!r}: give the run directory, as classifier:RUN_DIR[:LABEL]")

    def where(p: str) -> Path:
        path = Path(p).expanduser()
        return path if path.is_absolute() or base_dir is None else base_dir / path

    run, labels = rest, ""
    if not where(rest).is_dir() and ":" in rest:
        run, labels = rest.rsplit(":", 1)
    chosen = [x.strip() for x in labels.split("+") if x.strip()] if labels else []
    return ClassifierMetric(spec, where(run).resolve(), chosen)


def load_classifier(run_dir: str | Path, precision: str | None = None) -> LoadedRun:
    """A finished classification run, loaded once per process and kept."""
    path = Path(run_dir).resolve()
    key = (str(path), precision)
    if key in _CACHE:
        return _CACHE[key]
    if not path.is_dir():
        raise ConfigError(f"classifier: run directory not found: {path}")
    if not rundir.is_run_dir(path):
        raise ConfigError(f"classifier: {path} is not a tunelab run directory (no run.json)")
    kind = rundir.read_info(path).get("task", {}).get("type")
    if kind != "classification":
        raise ConfigError(
            f"classifier: {path} is a {kind} run; the classifier: metric needs a finished "
            "classification run"
        )
    _CACHE[key] = load_run(path, precision=precision)
    return _CACHE[key]


def clear_cache() -> None:
    """Forget the loaded classifiers (frees their memory)."""
    _CACHE.clear()


def score_texts(
    metric: ClassifierMetric,
    texts: list[str],
    batch_size: int = 64,
    precision: str | None = None,
) -> tuple[dict[str, float], list[dict[str, Any] | None]]:
    """(the shares and mean probabilities, keyed ``NAME/...``; each text's label and
    probabilities, None for an empty text)."""
    run = load_classifier(metric.run_dir, precision)
    labels = list(run.task.labels)
    unknown = [c for c in metric.chosen if c not in labels]
    if unknown:
        raise ConfigError(
            f"{metric.spec}: label {unknown[0]!r} is not one of this classifier's labels: "
            f"{', '.join(labels)}"
        )
    keep = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
    probs: list[list[float] | None] = [None] * len(texts)
    if keep:
        got = run.task.predict_texts(
            run.model, [texts[i] for i in keep], None, batch_size, run.accelerator
        )
        for i, p in zip(keep, got):
            probs[i] = p
    shares = label_shares(probs, labels, metric.chosen)
    per_text = [
        None
        if p is None
        else {
            "label": labels[max(range(len(p)), key=p.__getitem__)],
            "probabilities": {n: round(q, 6) for n, q in zip(labels, p)},
        }
        for p in probs
    ]
    return {f"{metric.name}/{k}": v for k, v in shares.items()}, per_text


def headline(metric: ClassifierMetric) -> str | None:
    """The score a suite shows for this metric: the share given the chosen label(s)."""
    return f"{metric.name}/share_{'+'.join(metric.chosen)}" if metric.chosen else None


def score_generations(
    task,
    model,
    accelerator,
    split,
    rows: list[dict[str, Any]],
    metrics: list[ClassifierMetric],
    batch_size: int,
    precision: str | None = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Score a generation task's outputs on ``split`` with each classifier: the texts its
    generation metrics already produced (``rows``' predictions), else generated here. Returns
    the scores and the rows, each with every classifier's label and probabilities."""
    generated = any(m != "choice" for m in task.s["metrics"])
    if generated and rows:
        texts = [r["prediction"] for r in rows]
    else:
        prompts = [f["input_ids"][: f["prompt_len"]] for f in split.features]
        texts = task.generate_for(model, prompts, batch_size, accelerator)
        if rows and len(rows) == len(texts):  # choice rows: the generation goes beside them
            for r, text in zip(rows, texts):
                r["generation"] = text
        else:
            rows = [
                {
                    "row": r["row"],
                    "prompt": r["prompt"],
                    "reference": r["reference"],
                    "prediction": text,
                }
                for r, text in zip(split.records, texts)
            ]
    out: dict[str, float] = {}
    for metric in metrics:
        scores, per_text = score_texts(metric, texts, batch_size, precision)
        out.update(scores)
        for r, verdict in zip(rows, per_text):
            r.setdefault("classifiers", {})[metric.name] = verdict
    return out, rows
