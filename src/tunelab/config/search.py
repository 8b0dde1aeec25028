"""The ``search:`` section: what ``tunelab tune`` searches over and how (Optuna underneath).

A parameter of the space is a config key (``training.lr``, ``lora.r``, ``method``) with one
distribution: ``{float: [LOW, HIGH], log: true}``, ``{int: [LOW, HIGH], step: 2}`` or
``{choice: [a, b]}``, and optionally ``when: {OTHER_KEY: [values]}`` (sampled only in trials
where those parameters took one of those values: a conditional parameter)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from tunelab.utils.settings import Section

#: an objective that is not a validation metric: the run's trainable parameter count
TRAINABLE_PARAMS = "trainable_params"


class SearchParam(Section):
    """One parameter of the search space."""

    float_: list[float] | None = Field(None, alias="float", description="[low, high]")
    int_: list[int] | None = Field(None, alias="int", description="[low, high] (inclusive)")
    choice: list[Any] | None = Field(None, description="the values to choose among")
    log: bool = Field(False, description="sample on a log scale (float/int)")
    step: float | None = Field(None, gt=0, description="a grid step (float/int)")
    when: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="sample only when these (choice) parameters took one of these values",
    )

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    @model_validator(mode="after")
    def _one_kind(self) -> SearchParam:
        kinds = [k for k in ("float", "int", "choice") if self.bounds_or_choices(k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "give exactly one of float: [low, high], int: [low, high], choice: [..]"
            )
        kind = kinds[0]
        if kind == "choice":
            if not self.choice:
                raise ValueError("choice: give at least one value")
            if self.log or self.step:
                raise ValueError("log and step apply to float/int, not choice")
            return self
        bounds = self.bounds_or_choices(kind)
        if len(bounds) != 2 or not bounds[0] < bounds[1]:
            raise ValueError(f"{kind}: give [low, high] with low < high (got {bounds})")
        if self.log and bounds[0] <= 0:
            raise ValueError(f"log: true needs low > 0 (got {bounds[0]})")
        if self.log and self.step:
            raise ValueError("log and step cannot be combined")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("float", "int", "choice") if self.bounds_or_choices(k) is not None)

    def bounds_or_choices(self, kind: str) -> list | None:
        return {"float": self.float_, "int": self.int_, "choice": self.choice}[kind]

    def probe_values(self) -> list[Any]:
        """Values that reach every kind of config check: the bounds, or every choice."""
        return (
            list(self.choice) if self.kind == "choice" else list(self.bounds_or_choices(self.kind))
        )


class SearchConfig(Section):
    metric: str | None = Field(
        None, description="The validation metric the search optimises; unset: training.metric."
    )
    direction: Literal["maximize", "minimize"] | None = Field(
        None, description="Unset: inferred from the metric (loss, perplexity: minimize)."
    )
    objectives: list[str] = Field(
        default_factory=list,
        description="Several objectives (validation metrics, or `trainable_params`) searched "
        "together for a Pareto front; replaces `metric`.",
    )
    directions: list[Literal["maximize", "minimize"]] = Field(
        default_factory=list, description="One per objective; unset: inferred from each."
    )
    sampler: Literal["tpe", "random", "grid", "cmaes"] = Field(
        "tpe", description="Optuna sampler (grid: every parameter a `choice`)."
    )
    pruner: Literal["median", "hyperband", "none"] | None = Field(
        None,
        description="Stop unpromising trials at the loop's periodic evaluations; unset: "
        "median with one objective, none with several (Optuna cannot prune those).",
    )
    prune_startup_trials: int = Field(
        5, ge=0, description="Trials that run to the end before the pruner may stop any."
    )
    seed: int = Field(0, description="The sampler's seed.")
    space: dict[str, SearchParam] = Field(
        default_factory=dict,
        description="Config key → distribution: {float: [lo, hi], log: true}, {int: [lo, hi]}, "
        "{choice: [..]}, with an optional `when: {key: [values]}` condition.",
    )
    heartbeat_s: int = Field(
        30,
        ge=1,
        description="Each running trial's heartbeat in the study storage; a trial silent for "
        "twice this long (its worker killed) is failed and re-run from its last checkpoint.",
    )

    @model_validator(mode="before")
    @classmethod
    def _space_errors(cls, data: Any) -> Any:
        """A bad parameter is reported as ``search.space.KEY: ...`` (its config key whole)."""
        if not isinstance(data, dict) or not isinstance(data.get("space"), dict):
            return data
        out = dict(data)
        space = {}
        for key, raw in data["space"].items():
            if isinstance(raw, SearchParam):
                space[key] = raw
                continue
            if not isinstance(raw, dict):
                raise ValueError(
                    f"search.space.{key}: give a mapping such as {{float: [1e-5, 1e-3]}}, "
                    f"{{int: [4, 32]}} or {{choice: [16, 32]}} (got {raw!r})"
                )
            try:
                space[key] = SearchParam.model_validate(raw)
            except ValidationError as e:
                msgs = []
                for err in e.errors():
                    where = ".".join(str(p) for p in err["loc"])
                    msg = err["msg"].removeprefix("Value error, ")
                    msgs.append(f"{where}: {msg}" if where else msg)
                raise ValueError(f"search.space.{key}: " + "; ".join(msgs)) from None
        out["space"] = space
        return out

    @field_validator("metric")
    @classmethod
    def _not_test(cls, v: str | None) -> str | None:
        if v is not None and v.split("/")[0].split("_")[0].split(".")[0] == "test":
            raise ValueError(
                "the search optimises a validation score only; the test split is scored "
                "for the best trial alone. Name a validation metric (e.g. accuracy)"
            )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SearchConfig:
        for name in self.objectives:
            SearchConfig._not_test(name)
        if self.directions and len(self.directions) != len(self.objectives):
            raise ValueError(
                f"search.directions: give one per objective ({len(self.objectives)}), "
                f"not {len(self.directions)}"
            )
        if len(self.objectives) > 1 and self.pruner not in (None, "none"):
            raise ValueError(
                "search.pruner: Optuna prunes single-objective studies only; "
                "set search.pruner=none with several objectives"
            )
        keys = set(self.space)
        for key, param in self.space.items():
            for dep, values in param.when.items():
                other = self.space.get(dep)
                if other is None or other.kind != "choice":
                    raise ValueError(
                        f"search.space.{key}.when: {dep!r} must be a `choice` parameter of "
                        f"the space (have: {', '.join(sorted(keys - {key})) or 'none'})"
                    )
                bad = [v for v in values if v not in other.choice]
                if bad:
                    raise ValueError(
                        f"search.space.{key}.when.{dep}: {bad} not among its choices {other.choice}"
                    )
        self.ordered_keys()  # refuses a cycle of conditions
        if self.sampler == "grid":
            for key, param in self.space.items():
                if param.kind != "choice":
                    raise ValueError(
                        f"search.space.{key}: sampler=grid needs `choice` parameters "
                        f"(list the grid's values), not {param.kind}"
                    )
        return self

    def ordered_keys(self) -> list[str]:
        """Space keys with every condition's parameter before the parameters it conditions."""
        done: list[str] = []
        pending = list(self.space)
        while pending:
            ready = [k for k in pending if all(d in done for d in self.space[k].when)]
            if not ready:
                raise ValueError(
                    f"search.space: the `when` conditions of {', '.join(pending)} form a cycle"
                )
            done += ready
            pending = [k for k in pending if k not in ready]
        return done

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1

    def check_keys(self, base: dict[str, Any], validate: Callable[[dict], Any]) -> None:
        """Each space key, at each of its probe values, applied to ``base`` (a config dict)
        must give a valid config; else one error naming ``search.space.KEY``."""
        for key, param in self.space.items():
            for value in param.probe_values():
                try:
                    validate(apply_params(base, {key: value}))
                except (ValidationError, ValueError) as e:
                    detail = str(e).splitlines()
                    if isinstance(e, ValidationError):
                        detail = [
                            f"{'.'.join(str(p) for p in x['loc'])}: "
                            f"{x['msg'].removeprefix('Value error, ')}".lstrip(": ")
                            for x in e.errors()
                        ]
                    raise ValueError(
                        f"search.space.{key}: value {value!r} does not give a valid config: "
                        + "; ".join(detail)[:400]
                    ) from None


def apply_params(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """``base`` (a config dict, unchanged) with each dotted key set, as ``key=value`` does."""
    import copy

    out = copy.deepcopy(base)
    for key, value in params.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                nxt = node[p] = {}
            node = nxt
        node[parts[-1]] = value
    return out
