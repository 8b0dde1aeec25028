"""The typed run configuration: the single source of truth for YAML, ``key=value`` and Python.

Every field carries its documentation once (``Field(description=...)``); ``tunelab train --help``
and the README's reference are generated from it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunelab.config.search import SearchConfig
from tunelab.config.sections import (
    AugmentConfig,
    CurriculumConfig,
    DataConfig,
    MixtureConfig,
    ModelConfig,
    OutputConfig,
    PreferenceConfig,
    StageSpec,
    TaskConfig,
    TaskSpec,
    TrainingConfig,
    check_template,
)
from tunelab.errors import ConfigError
from tunelab.evaluation.metrics import headline_metric, primary_metric
from tunelab.methods import (
    DEFAULT_METHOD,
    method_class,
    method_names,
    method_sections,
    methods_where,
)
from tunelab.utils.settings import Section


class RunConfig(Section):
    """A complete fine-tuning run.

    Besides the fields below, a config holds one settings section per registered method that
    has settings (``lora``, ``freeze``, ``ia3``, ``adapter``, ``prefix``, ``prompt``, and any
    registered later): they are defined next to their method, and filled in here from the
    registry (pydantic's extra fields, validated by each method's own settings class)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    method: str = Field(DEFAULT_METHOD, description="Training method; see `tunelab methods`.")
    mixture: MixtureConfig = Field(default_factory=MixtureConfig)
    preference: PreferenceConfig = Field(default_factory=PreferenceConfig)
    stages: list[StageSpec] = Field(
        default_factory=list,
        description="Intermediate fine-tuning: stages trained one after another, each from the "
        "previous stage's (merged) weights, each kept as its own run directory.",
    )
    curriculum: CurriculumConfig = Field(default_factory=CurriculumConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    probes: list[TaskSpec] = Field(
        default_factory=list,
        description="Held-out tasks scored before and after training, reported as deltas "
        "(forgetting): e.g. WikiText-2 perplexity, BoolQ accuracy by log-likelihood choice.",
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    search: SearchConfig = Field(
        default_factory=SearchConfig,
        description="Hyperparameter search (`tunelab tune`): the space, objective(s), "
        "sampler and pruner; `tunelab train` ignores it.",
    )
    resume_ignore_changes: bool = Field(
        False,
        description="Resume even though the data, model, method or seed changed since the "
        "checkpoint (normally refused).",
    )
    resume: bool | Literal["auto"] = Field(
        False,
        description="`true`: continue the named run from its newest complete checkpoint; "
        "`auto`: do so when one exists, else start fresh.",
    )

    @model_validator(mode="before")
    @classmethod
    def _method_sections(cls, data: Any) -> Any:
        """Validate each registered method's settings section (defaults where absent)."""
        if not isinstance(data, dict):
            return data
        sections = method_sections()
        for key in data:
            if key not in cls.model_fields and key not in sections:
                raise ValueError(f"{key}: unknown key; allowed here: {', '.join(top_level_keys())}")
        out = dict(data)
        for key, settings in sections.items():
            if key in cls.model_fields:
                raise ValueError(
                    f"method settings section {key!r} has the name of a config section"
                )
            raw = out.get(key)
            if isinstance(raw, settings):
                continue
            try:
                out[key] = settings.model_validate({} if raw is None else raw)
            except ValidationError as e:
                raise ValueError(format_validation_error(e, settings, f"{key}.", "")) from None
        return out

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        if v not in method_names():
            raise ValueError(f"unknown method {v!r}; allowed: {', '.join(method_names())}")
        return v

    @model_validator(mode="after")
    def _task_defaults(self) -> RunConfig:
        for key, tc in [("task", self.task)] + [
            (f"{kind}[{i}] ({t.name}).task", self._spec_task_or_none(t))
            for kind, specs in (("mixture.tasks", self.mixture.tasks), ("probes", self.probes))
            for i, t in enumerate(specs)
        ]:
            if (
                tc is not None
                and "choice" in tc.metrics
                and not (tc.choices or "choices" in tc.fields)
            ):
                raise ValueError(
                    f"{key}.metrics has choice: give the options as {key}.choices "
                    "(e.g. [no, yes]) or per row through fields.choices"
                )
        self._check_specs()
        self._check_stages()
        self._check_mixture()
        if self.training.metric is None and self.mixture.tasks:
            scored = [primary_metric(self.spec_task(t), t.metric) for t in self.mixture.tasks]
            self.training.metric = "mean" if any(scored) else "mean_loss"
        if self.training.metric is None:
            self.training.metric = (
                "loss" if self.task.type == "generation" else headline_metric(self.task.type, [])
            )
        if not self.mixture.tasks:  # each mixture task names its own template
            check_template(self.task, "task")
        packs = self.task.packing or any(self.spec_task(t).packing for t in self.mixture.tasks)
        if packs and not method_class(self.method).supports_packing:
            raise ValueError(
                f"task.packing: method {self.method} does not train on packed rows; set "
                "task.packing=false or use another method"
            )
        return self

    @model_validator(mode="after")
    def _search_keys(self) -> RunConfig:
        if self.search.space:
            base = {k: v for k, v in self.to_dict().items() if k != "search"}
            self.search.check_keys(base, RunConfig.model_validate)
        return self

    def _spec_task_or_none(self, spec: TaskSpec) -> TaskConfig | None:
        try:
            return self.spec_task(spec)
        except ValidationError:
            return None  # reported by _check_specs with its key

    def spec_task(self, spec: TaskSpec) -> TaskConfig:
        """The top-level task section with ``spec``'s overrides applied."""
        return TaskConfig.model_validate(deep_merge(self.task.model_dump(), spec.task))

    def spec_config(self, spec: TaskSpec) -> RunConfig:
        """A single-task config for one task of the mixture (or one probe)."""
        d = self.to_dict()
        d["data"] = spec.data.model_dump(mode="json")
        d["task"] = self.spec_task(spec).model_dump(mode="json")
        d["mixture"], d["probes"] = {}, []
        d["training"]["metric"] = None
        return RunConfig.model_validate(d)

    def groups_by_length(self) -> bool:
        """Whether training batches examples of similar length: ``training.group_by_length``,
        or when unset, every task type but token classification. Worked out here, not stored,
        so a stage of another task type and a resumed run decide alike (on CoNLL-2003,
        length-grouped batches scored 55.6 entity F1 against 60.3 for random ones over 3 seeds,
        benchmarks/README.md; classification showed no such cost)."""
        if self.training.group_by_length is not None:
            return self.training.group_by_length
        return self.task.type != "token_classification"  # mixtures cannot hold that type

    def stage_config(self, stage: StageSpec) -> RunConfig:
        """The single-run config of one stage."""
        d = self.to_dict()
        d["stages"] = []
        for key in ("data", "task", "training", "mixture"):
            d[key] = deep_merge(d[key], getattr(stage, key))
        if stage.mixture.get("tasks"):
            d["data"] = DataConfig().model_dump(mode="json")
        elif stage.data:
            d["mixture"]["tasks"] = []
        if stage.method:
            d["method"] = stage.method
        if "metric" not in stage.training:
            d["training"]["metric"] = None
        return RunConfig.model_validate(d)

    def _check_specs(self) -> None:
        for key, specs in (("mixture.tasks", self.mixture.tasks), ("probes", self.probes)):
            names = [t.name for t in specs]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{key}: task names must be unique; repeated: {', '.join(dup)}")
            for i, spec in enumerate(specs):
                where = f"{key}[{i}] ({spec.name})"
                try:
                    tc = self.spec_task(spec)
                except ValidationError as e:
                    raise ValueError(
                        f"{where}.task: " + format_validation_error(e, head="")
                    ) from None
                check_template(tc, f"{where}.task")
                if key == "mixture.tasks" and not spec.data.train:
                    raise ValueError(f"{where}.data.train: no training data")
                if key == "probes" and not (spec.data.validation or spec.data.train):
                    raise ValueError(
                        f"{where}.data: give the probe's rows as `validation` (or `train`)"
                    )
        cur = self.curriculum
        if cur.by == "column" and not cur.column:
            raise ValueError("curriculum.by=column needs curriculum.column (the difficulty column)")

    def _check_stages(self) -> None:
        names = [st.name for st in self.stages]
        if len(set(names)) != len(names):
            raise ValueError("stages: stage names must be unique")
        for i, st in enumerate(self.stages):
            try:
                self.stage_config(st)
            except ValidationError as e:
                raise ValueError(
                    f"stages[{i}] ({st.name}): " + format_validation_error(e, head="")
                ) from None

    def _check_mixture(self) -> None:
        m = self.mixture
        if not m.tasks:
            return
        types = {self.spec_task(t).type for t in m.tasks}
        if "preference" in types:
            raise ValueError("mixture.tasks: preference tasks train alone (or as a stage)")
        if types - {"classification", "generation"}:
            raise ValueError(
                f"mixture.tasks: a mixture holds classification or generation tasks, not "
                f"{', '.join(sorted(types - {'classification', 'generation'}))}"
            )
        if len(types) > 1:
            raise ValueError(
                "mixture.tasks: classification and generation tasks cannot share a model; "
                "make them all generation tasks (e.g. format=template, template=sentiment) "
                "or all classification tasks (one head per task)"
            )
        if len({self.spec_task(t).packing for t in m.tasks}) > 1:
            raise ValueError("mixture.tasks: task.packing must be the same for every task")
        if m.strategy == "weights" and any(t.weight is None for t in m.tasks):
            missing = [t.name for t in m.tasks if t.weight is None]
            raise ValueError(
                f"mixture.strategy=weights needs a weight for every task; missing: "
                f"{', '.join(missing)}"
            )
        names = {t.name for t in m.tasks}
        last = 0.0
        for i, ph in enumerate(m.phases):
            if ph.until <= last:
                raise ValueError(f"mixture.phases[{i}].until must grow from phase to phase")
            last = ph.until
            if ph.strategy == "weights" and set(ph.weights) != names:
                raise ValueError(
                    f"mixture.phases[{i}].weights: give one weight per task "
                    f"({', '.join(sorted(names))})"
                )
        side_by_side = methods_where(saves_peft_adapter=True)
        if m.adapters == "per_task" and self.method not in side_by_side:
            raise ValueError(
                f"mixture.adapters=per_task needs an adapter method that loads side by "
                f"side ({', '.join(side_by_side)}), not method={self.method}"
            )
        if self.curriculum.by != "none":
            raise ValueError(
                "curriculum applies to single-task training; for a mixture, schedule the "
                "tasks with mixture.phases"
            )
        if self.data.train:
            raise ValueError(
                "data.train and mixture.tasks are both set: give the training data in "
                "each mixture task's `data`, not in the top-level `data`"
            )

    def section(self, key: str) -> Section:
        """A config section by name, method settings included (``cfg.section("lora")``)."""
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-safe dict of every value (defaults included), in the documented order."""
        d = self.model_dump(mode="json")
        return {k: d[k] for k in top_level_keys() if k in d}


def top_level_keys() -> list[str]:
    """The config's top-level keys: its sections with each method's right after ``method``."""
    fields = list(RunConfig.model_fields)
    at = fields.index("method") + 1
    return [*fields[:at], *method_sections(), *fields[at:]]


def format_validation_error(
    err: ValidationError,
    root: type[BaseModel] | None = None,
    prefix: str = "",
    head: str = "invalid config: ",
) -> str:
    """One line naming each bad key (``prefix`` + its location) and what is allowed."""
    lines = []
    for e in err.errors():
        key = prefix + ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if not e["loc"] or msg.startswith(key + "."):  # the message names the keys itself
            lines.append(msg)
            continue
        if e["type"] == "extra_forbidden":
            section = _section_for(e["loc"][:-1], root or RunConfig)
            allowed = ", ".join(section.model_fields) if section else ""
            msg = f"unknown key; allowed here: {allowed}"
        elif "input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], dict):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"{key}: {msg}")
    return head + "; ".join(lines)


def _section_for(loc: tuple, root: type[BaseModel]) -> type[BaseModel] | None:
    cls: type[BaseModel] = root
    for part in loc:
        field = cls.model_fields.get(str(part))
        if field is None or not (
            isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        ):
            return None
        cls = field.annotation
    return cls


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["training.lr=1e-4", "method=full"]`` into a nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(
                f"override {item!r} is not of the form key=value (e.g. training.lr=1e-4)"
            )
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            with contextlib.suppress(ValueError):
                value = float(value) if any(c in value.lower() for c in ".e") else value
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override of {p!r}")
        node[parts[-1]] = value
    return out


def deep_merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(merged.get(k), dict):
            merged[k] = deep_merge(merged[k], v)
        else:
            merged[k] = v
    return merged


def load_config(
    source: str | os.PathLike | dict | RunConfig | None = None,
    overrides: list[str] | dict | None = None,
) -> RunConfig:
    """Build a validated :class:`RunConfig` from a YAML path, a dict or a config, plus overrides.

    Relative data paths in a YAML file are taken relative to the current directory, as a
    user types them on the command line.
    """
    if isinstance(source, RunConfig):
        data = source.to_dict()
    elif isinstance(source, dict):
        data = dict(source)
    elif source is None:
        data = {}
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(
                f"{path} must hold a mapping of config sections, not {type(data).__name__}"
            )
    if overrides:
        extra = parse_overrides(overrides) if isinstance(overrides, list) else overrides
        data = deep_merge(data, extra)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e)) from None


def config_help() -> str:
    """Every config key with its type, default and documentation (for `--help` and docs)."""
    lines: list[str] = []

    def walk(fields, prefix: str) -> None:
        for name, field in fields:
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann.model_fields.items(), f"{prefix}{name}.")
                continue
            default = field.get_default(call_default_factory=True)
            lines.append(f"  {prefix}{name} = {default!r}\n      {field.description or ''}")

    sections = method_sections()
    for key in top_level_keys():
        if key in sections:
            walk(sections[key].model_fields.items(), f"{key}.")
        else:
            walk([(key, RunConfig.model_fields[key])], "")
    return "\n".join(lines)
