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
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tunelab.errors import ConfigError


class Section(BaseModel):
    """Base for config sections: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    name: str = Field(
        "minilm-l6",
        description="Embedded model name (see `tunelab models`), a local transformers folder, "
        "a .gguf file, or a hub id such as `bert-base-uncased`.",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    trust_remote_code: bool = Field(
        False, description="Allow code shipped with a hub model to run. Off unless set here."
    )
    max_length: int = Field(128, ge=8, le=32768, description="Tokens kept per example.")


class DataConfig(Section):
    train: str | None = Field(
        None,
        description="Training data: a .csv/.tsv/.jsonl/.json/.parquet file, or `hub:ID[:CONFIG]`.",
    )
    validation: str | None = Field(
        None, description="Validation data (same forms); if unset, a seeded held-out fraction."
    )
    test: str | None = Field(None, description="Optional test data, scored at the end.")
    train_split: str = Field("train", description="Split name for hub datasets.")
    validation_split: str = Field("validation", description="Split name for hub datasets.")
    test_split: str = Field("test", description="Split name for hub datasets.")
    text_column: str = Field("text", description="Column holding the (first) text.")
    text_pair_column: str | None = Field(None, description="Column holding the second text.")
    label_column: str = Field("label", description="Column holding the label.")
    labels: list[str] | None = Field(
        None,
        description="Label names in index order. If unset: the sorted distinct training labels.",
    )
    validation_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="Held-out share of train when no validation is given."
    )
    max_train_rows: int | None = Field(
        None, ge=1, description="Use a seeded random subset of this many training rows."
    )
    on_error: Literal["strict", "skip"] = Field(
        "strict",
        description="Malformed rows: `strict` stops with their row numbers, `skip` drops, "
        "counts and reports them.",
    )


def _yaml_words(v: Any) -> Any:
    """YAML 1.1 reads unquoted yes/no/on/off as booleans: give them back as words."""
    if isinstance(v, list):
        return ["yes" if x is True else "no" if x is False else x for x in v]
    return v


class TaskConfig(Section):
    type: Literal["classification", "generation"] = Field(
        "classification",
        description="What the model learns to do: `classification` (a label per text) or "
        "`generation` (text from text: instructions, chat, summaries, answers, translations, "
        "or plain documents).",
    )
    format: Literal["instruction", "chat", "prompt_completion", "template", "text"] = Field(
        "instruction",
        description="generation: rows are `{instruction, input, output}`, chat `messages`, "
        "`{prompt, completion}`, any labelled data through a `template`, or raw `text` "
        "(domain adaptation: every token is learned).",
    )
    template: str | None = Field(
        None,
        description="format=template: a shipped template set (sentiment, summarization, qa, "
        "translation, yesno); several phrasings, one drawn per example with the seed.",
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Which column fills each field, e.g. {prompt: question, completion: "
        "answer}; a dotted path reaches into nested values (`answers.text.0`); for "
        "format=text, `a|b` takes the first of the columns a row has.",
    )
    chat_template: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Wrap prompts in the tokenizer's chat template: `auto` = when it has one.",
    )
    system_prompt: str | None = Field(None, description="System message for chat templates.")
    loss_on: Literal["response", "all"] = Field(
        "response", description="Learn the response tokens only (default) or every token."
    )
    too_long: Literal["truncate_prompt", "skip"] = Field(
        "truncate_prompt",
        description="A row longer than model.max_length loses prompt tokens (never response "
        "tokens), or is skipped and counted.",
    )
    packing: bool = Field(
        False,
        description="Causal LMs: pack a batch's examples into rows of up to model.max_length "
        "tokens with per-example positions, so no token attends across examples and little "
        "compute goes to padding.",
    )
    metrics: list[Literal["rouge", "bleu", "chrf", "squad", "exact_match", "choice"]] = Field(
        default_factory=list,
        description="Scores at each evaluation (perplexity is always reported): generation-based "
        "rouge, bleu, chrf, squad, exact_match; `choice`: log-likelihood multiple choice "
        "among `choices` (acc, acc_norm as lm-evaluation-harness).",
    )
    choices: list[str] | None = Field(
        None,
        description="metrics=[choice]: the answer options (e.g. [no, yes]); per-row options "
        "come from `fields.choices` instead.",
    )
    _choice_words = field_validator("choices", mode="before")(_yaml_words)
    max_new_tokens: int = Field(64, ge=1, le=8192, description="Generation: new tokens at most.")
    num_beams: int = Field(1, ge=1, le=64, description="Generation: beams (1 = greedy).")
    do_sample: bool = Field(False, description="Generation: sample instead of greedy/beam.")
    temperature: float = Field(1.0, gt=0, description="Generation: sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Generation: nucleus sampling mass.")
    context_tokens: int = Field(
        0,
        ge=0,
        description="format=text: each block after the first also reads this many preceding "
        "tokens as unscored context (rolling-window perplexity, as lm-evaluation-harness).",
    )
    eval_max_examples: int | None = Field(
        None, ge=1, description="Generation: score at most this many validation rows (seeded)."
    )


class TaskSpec(Section):
    """One task of a mixture, or one probe: its own data and task settings."""

    name: str = Field(description="Short task name (letters, digits, `-`, `_`); keys its metrics.")
    data: DataConfig = Field(default_factory=DataConfig, description="This task's data.")
    task: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides of the top-level `task` section for this task (e.g. "
        "{template: qa, metrics: [squad]}).",
    )
    metric: str | None = Field(
        None,
        description="The score of this task that enters the mixture's `mean`; unset: the "
        "first of its `metrics` (rougeL, bleu, chrf, squad_f1, exact_match, accuracy).",
    )
    weight: float | None = Field(
        None, ge=0, description="mixture.strategy=weights: this task's sampling weight."
    )
    loss_weight: float = Field(1.0, ge=0, description="Factor on this task's loss.")

    @field_validator("name")
    @classmethod
    def _plain(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"[A-Za-z0-9_-]+", v):
            raise ValueError("use letters, digits, '-' and '_' only")
        return v


class PhaseConfig(Section):
    until: float = Field(
        gt=0, le=1, description="This phase lasts until this share of the training steps."
    )
    strategy: Literal["proportional", "temperature", "uniform", "weights"] = Field(
        "proportional", description="Sampling rates during this phase (as mixture.strategy)."
    )
    temperature: float = Field(2.0, gt=0, description="T of strategy=temperature.")
    cap: int | None = Field(None, ge=1, description="K: examples counted per task at most.")
    weights: dict[str, float] = Field(
        default_factory=dict, description="strategy=weights: a weight per task name."
    )


class CurriculumConfig(Section):
    by: Literal["none", "length", "column", "loss"] = Field(
        "none",
        description="Order training examples from easy to hard by token `length`, a numeric "
        "`column` (larger = harder), or the model's own `loss` before training; `none`: off.",
    )
    column: str | None = Field(None, description="by=column: the column holding difficulty.")
    pacing: Literal["linear", "root"] = Field(
        "root", description="How fast harder examples are admitted (competence c(t))."
    )
    start: float = Field(0.2, gt=0, le=1, description="Share of the easiest examples at step 0.")
    full_at: float = Field(
        0.5, gt=0, le=1, description="Share of training after which every example is in play."
    )


class StageSpec(Section):
    """One stage of intermediate fine-tuning: the run's config with these overrides."""

    name: str = Field(description="Stage name (letters, digits, `-`, `_`).")
    data: dict[str, Any] = Field(default_factory=dict, description="Overrides of `data`.")
    task: dict[str, Any] = Field(default_factory=dict, description="Overrides of `task`.")
    training: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of `training` (e.g. epochs, lr)."
    )
    mixture: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of `mixture` (a multi-task stage)."
    )
    method: str | None = Field(None, description="This stage's method; unset: the run's.")

    _plain = field_validator("name")(TaskSpec._plain.__func__)


class AugmentConfig(Section):
    noise_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of training rows whose inputs get perturbed "
        "(noise injection; references are never touched).",
    )
    perturbations: list[str] = Field(
        default_factory=lambda: ["mild_mix"],
        description="Perturbations drawn from per noisy row (see tunelab.evaluation.perturb).",
    )
    strength: float = Field(0.1, ge=0, le=1, description="Perturbation strength.")
    counterfactual: list[str] = Field(
        default_factory=list,
        description="Counterfactual data augmentation: for each attribute (gender, "
        "names:A-B), a swapped copy of every training row that mentions one of its terms.",
    )


class MixtureConfig(Section):
    tasks: list[TaskSpec] = Field(
        default_factory=list,
        description="Multi-task training: the tasks to mix (each with data, task overrides, "
        "metric, weight, loss_weight). Empty: single-task training from `data`/`task`.",
    )
    strategy: Literal["proportional", "temperature", "uniform", "weights"] = Field(
        "proportional",
        description="Task sampling rates (T5): examples-proportional r∝min(n,K), temperature "
        "r∝min(n,K)^(1/T), uniform, or each task's `weight`.",
    )
    cap: int | None = Field(None, ge=1, description="K: examples counted per task at most.")
    temperature: float = Field(2.0, gt=0, description="T of strategy=temperature.")
    per: Literal["example", "batch"] = Field(
        "example",
        description="Draw the task per example (mixed batches) or per batch (each batch "
        "from one task).",
    )
    adapters: Literal["shared", "per_task"] = Field(
        "shared",
        description="`shared`: one model (or adapter) learns every task; `per_task`: one "
        "adapter per task on the shared frozen base, trained in turn, served by task name "
        "(`tunelab.load_adapters(RUN_DIR)`) and combinable (`tunelab combine`).",
    )
    phases: list[PhaseConfig] = Field(
        default_factory=list,
        description="A schedule of mixtures: each phase has its own sampling strategy until "
        "its `until` share of training (the last phase continues to the end).",
    )
    loss_normalization: Literal["tokens", "task"] = Field(
        "tokens",
        description="`tokens`: a batch's loss is its summed token loss over its token count; "
        "`task`: each task's loss is first averaged over its own tokens.",
    )


class LoraConfig(Section):
    r: int = Field(8, ge=1, le=1024, description="LoRA rank.")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        None,
        description="Module names to adapt, or `all-linear`. Unset: attention and MLP "
        "projections of the model family.",
    )
    train_head: bool = Field(
        True, description="Train the newly initialised task head fully alongside LoRA."
    )
    rslora: bool = Field(False, description="Rank-stabilised scaling alpha/sqrt(r) (rsLoRA).")


class FreezeConfig(Section):
    train_top_layers: int = Field(
        2, ge=0, description="Transformer layers, counted from the top, that train (plus the head)."
    )


class Ia3Config(Section):
    target_modules: list[str] | None = Field(
        None,
        description="Modules whose outputs IA3 rescales; unset: PEFT's default for the family.",
    )
    feedforward_modules: list[str] | None = Field(
        None, description="Which of those are feed-forward (scaled on the input); unset: default."
    )


class AdapterConfig(Section):
    placement: Literal["houlsby", "pfeiffer"] = Field(
        "houlsby",
        description="`houlsby`: a bottleneck after the attention and the feed-forward block of "
        "every layer; `pfeiffer`: after the feed-forward block only.",
    )
    reduction_factor: int = Field(
        16, ge=1, le=4096, description="Hidden size divided by the bottleneck width."
    )
    non_linearity: Literal["relu", "gelu", "swish", "tanh"] = Field(
        "relu", description="Activation between the down- and up-projection."
    )
    train_layernorm: bool = Field(
        False, description="Also train the layer norms of the transformer (Houlsby et al. do)."
    )


class PrefixConfig(Section):
    num_virtual_tokens: int = Field(
        20, ge=1, le=1024, description="Prefix length: key/value vectors per attention layer."
    )
    projection: bool = Field(
        False,
        description="Reparameterise the prefixes through a two-layer MLP while training "
        "(Li & Liang); only the resulting prefixes are saved.",
    )
    projection_hidden: int = Field(512, ge=1, description="Hidden width of that MLP.")
    init_text: str | None = Field(
        None,
        description="Initialise the prefixes with the model's own keys/values of this text "
        "(repeated to length); unset: of randomly drawn vocabulary tokens.",
    )


class PromptConfig(Section):
    num_virtual_tokens: int = Field(
        20, ge=1, le=1024, description="Soft-prompt length in embedding vectors."
    )
    init_text: str | None = Field(
        None,
        description="Initialise the soft prompt with the embeddings of this text (repeated to "
        "length); unset: embeddings of randomly drawn vocabulary tokens.",
    )


class TrainingConfig(Section):
    epochs: float = Field(3.0, gt=0, description="Passes over the training data.")
    max_steps: int | None = Field(
        None, ge=1, description="Optimizer steps; overrides `epochs` when set."
    )
    batch_size: int = Field(32, ge=1, description="Examples per device per micro-batch.")
    eval_batch_size: int | None = Field(None, ge=1, description="Defaults to 2 × batch_size.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    lr: float = Field(5e-5, gt=0, lt=1.0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not on biases/norms).")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    adam_eps: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    head_lr_scale: float = Field(
        1.0, gt=0, description="Learning-rate factor for the newly initialised task head."
    )
    layer_lr_decay: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Layer-wise lr decay: layer i of L gets lr·d^(L-i); unset: off.",
    )
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="Share of steps spent warming up.")
    scheduler: Literal["linear", "cosine", "constant"] = Field(
        "linear", description="Learning-rate decay after warmup."
    )
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping; unset: off.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto",
        description="`auto`: bf16 autocast where the CPU/GPU supports it, else fp32.",
    )
    group_by_length: bool = Field(
        True, description="Batch examples of similar length together (less padding)."
    )
    eval_every: int | None = Field(
        None, ge=1, description="Evaluate every N optimizer steps; unset: at each epoch end."
    )
    eval_before: bool = Field(True, description="Score the untrained model first.")
    save_every: int | None = Field(
        None, ge=1, description="Write a resumable checkpoint every N steps; unset: at evals."
    )
    save_checkpoints: bool = Field(True, description="Write resumable checkpoints at all.")
    keep_last: int = Field(2, ge=1, description="Complete checkpoints kept on disk.")
    metric: str | None = Field(
        None,
        description="Validation metric for best model / stopping; unset: accuracy "
        "(classification) or loss (generation).",
    )
    greater_is_better: bool | None = Field(None, description="Unset: inferred from the metric.")
    load_best: bool = Field(True, description="End with the weights of the best evaluation.")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many evaluations without improvement."
    )
    max_bad_steps: int = Field(
        5, ge=1, description="Stop after this many consecutive non-finite loss/gradient steps."
    )
    seed: int = Field(42, description="Seed for data order, initialisation and dropout.")
    log_every: int = Field(10, ge=1, description="Log training loss every N optimizer steps.")
    threads: int | None = Field(None, ge=1, description="CPU threads for torch; unset: default.")
    progress: bool = Field(True, description="Show a progress bar.")
    trace_examples: bool = Field(
        False,
        description="Log the source row numbers of every step's examples (trace-rank*.jsonl).",
    )
    fast_dropout: bool = Field(
        True, description="Use tunelab's faster CPU dropout (same semantics as nn.Dropout)."
    )
    l2sp: float | None = Field(
        None,
        ge=0,
        description="L2-SP: pull the trained pretrained weights back toward their starting "
        "values by lr·α·(θ−θ₀) each step (decoupled, like AdamW's decay); the new head is "
        "exempt. Counters forgetting; unset: off.",
    )
    activation_checkpointing: Literal["none", "selective", "full"] = Field(
        "none",
        description="Recompute activations in the backward pass instead of keeping them. "
        "`full`: every layer's forward runs twice (least memory, the most compute); "
        "`selective`: matmul and attention outputs are kept, only the cheap element-wise ops "
        "(norms, activations, rotary embeddings, LoRA's rank-r products) are recomputed; "
        "`none`: keep everything. YAML true/false mean full/none.",
    )

    @field_validator("activation_checkpointing", mode="before")
    @classmethod
    def _checkpointing_bool(cls, v: Any) -> Any:
        words = {True: "full", False: "none", "true": "full", "false": "none"}
        if isinstance(v, bool | int) and v in (0, 1):
            return words[bool(v)]
        return words.get(v.lower(), v.lower()) if isinstance(v, str) else v


class OutputConfig(Section):
    dir: str = Field("runs", description="Folder holding run directories.")
    name: str | None = Field(
        None, description="Run directory name; unset: `<model>-<method>-<timestamp>`."
    )
    overwrite: bool = Field(False, description="Replace an existing run directory of that name.")
    save_predictions: bool = Field(True, description="Write per-example predictions.")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str | None) -> str | None:
        if v is not None and (not v or "/" in v or "\\" in v or v in {".", ".."}):
            raise ValueError("must be a plain folder name (no slashes)")
        return v


class RunConfig(Section):
    """A complete fine-tuning run."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    method: str = Field("lora", description="Training method; see `tunelab methods`.")
    lora: LoraConfig = Field(default_factory=LoraConfig)
    freeze: FreezeConfig = Field(default_factory=FreezeConfig)
    ia3: Ia3Config = Field(default_factory=Ia3Config)
    adapter: AdapterConfig = Field(default_factory=AdapterConfig)
    prefix: PrefixConfig = Field(default_factory=PrefixConfig)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    mixture: MixtureConfig = Field(default_factory=MixtureConfig)
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

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        from tunelab.methods import method_names

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
        if self.training.metric is None and self.mixture.tasks:
            from tunelab.tasks.mixture import primary_metric

            scored = [primary_metric(self.spec_task(t), t.metric) for t in self.mixture.tasks]
            self.training.metric = "mean" if any(scored) else "mean_loss"
        if self.training.metric is None:
            self.training.metric = "accuracy" if self.task.type == "classification" else "loss"
        if (
            self.task.type == "generation"
            and self.task.format == "template"
            and not self.mixture.tasks  # each mixture task names its own template
        ):
            from tunelab.data.templates import TEMPLATES

            if self.task.template not in TEMPLATES:
                raise ValueError(
                    f"task.template: {self.task.template!r} is not a shipped template; "
                    f"allowed: {', '.join(TEMPLATES)}"
                )
        return self

    def _spec_task_or_none(self, spec: TaskSpec) -> TaskConfig | None:
        try:
            return self.spec_task(spec)
        except ValidationError:
            return None  # reported by _check_specs with its key

    def spec_task(self, spec: TaskSpec) -> TaskConfig:
        """The top-level task section with ``spec``'s overrides applied."""
        return TaskConfig.model_validate(_deep_merge(self.task.model_dump(), spec.task))

    def spec_config(self, spec: TaskSpec) -> RunConfig:
        """A single-task config for one task of the mixture (or one probe)."""
        d = self.to_dict()
        d["data"] = spec.data.model_dump(mode="json")
        d["task"] = self.spec_task(spec).model_dump(mode="json")
        d["mixture"], d["probes"] = {}, []
        d["training"]["metric"] = None
        return RunConfig.model_validate(d)

    def stage_config(self, stage: StageSpec) -> RunConfig:
        """The single-run config of one stage."""
        d = self.to_dict()
        d["stages"] = []
        for key in ("data", "task", "training", "mixture"):
            d[key] = _deep_merge(d[key], getattr(stage, key))
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
                try:
                    tc = self.spec_task(spec)
                except ValidationError as e:
                    raise ValueError(
                        f"{key}[{i}] ({spec.name}).task: "
                        + _format_validation_error(e).removeprefix("invalid config: ")
                    ) from None
                if tc.type == "generation" and tc.format == "template":
                    from tunelab.data.templates import TEMPLATES

                    if tc.template not in TEMPLATES:
                        raise ValueError(
                            f"{key}[{i}] ({spec.name}).task.template: {tc.template!r} is not "
                            f"a shipped template; allowed: {', '.join(TEMPLATES)}"
                        )
                if key == "mixture.tasks" and not spec.data.train:
                    raise ValueError(f"{key}[{i}] ({spec.name}).data.train: no training data")
                if key == "probes" and not (spec.data.validation or spec.data.train):
                    raise ValueError(
                        f"{key}[{i}] ({spec.name}).data: give the probe's rows as "
                        "`validation` (or `train`)"
                    )
        names = [st.name for st in self.stages]
        if len(set(names)) != len(names):
            raise ValueError("stages: stage names must be unique")
        for i, st in enumerate(self.stages):
            try:
                self.stage_config(st)
            except ValidationError as e:
                raise ValueError(
                    f"stages[{i}] ({st.name}): "
                    + _format_validation_error(e).removeprefix("invalid config: ")
                ) from None
        cur = self.curriculum
        if cur.by == "column" and not cur.column:
            raise ValueError("curriculum.by=column needs curriculum.column (the difficulty column)")
        m = self.mixture
        if m.tasks:
            types = {self.spec_task(t).type for t in m.tasks}
            if len(types) > 1:
                raise ValueError(
                    "mixture.tasks: classification and generation tasks cannot share a model; "
                    "make them all generation tasks (e.g. format=template, template=sentiment) "
                    "or all classification tasks (one head per task)"
                )
            packs = {self.spec_task(t).packing for t in m.tasks}
            if len(packs) > 1:
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
            if m.adapters == "per_task" and self.method not in ("lora", "dora", "ia3"):
                raise ValueError(
                    f"mixture.adapters=per_task needs an adapter method that loads side by "
                    f"side (lora, dora, ia3), not method={self.method}"
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

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-safe dict of every value (defaults included)."""
        return self.model_dump(mode="json")


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if not key:  # a whole-config check: its message names the keys itself
            lines.append(msg)
            continue
        if e["type"] == "extra_forbidden":
            section = _section_for(e["loc"][:-1])
            allowed = ", ".join(section.model_fields) if section else ""
            msg = f"unknown key; allowed here: {allowed}"
        elif "input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], dict):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"{key}: {msg}")
    return "invalid config: " + "; ".join(lines)


def _section_for(loc: tuple) -> type[BaseModel] | None:
    cls: type[BaseModel] = RunConfig
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


def _deep_merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(merged.get(k), dict):
            merged[k] = _deep_merge(merged[k], v)
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
        data = _deep_merge(data, extra)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e)) from None


def config_help() -> str:
    """Every config key with its type, default and documentation (for `--help` and docs)."""
    lines: list[str] = []

    def walk(cls: type[BaseModel], prefix: str) -> None:
        for name, field in cls.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
                continue
            default = field.get_default(call_default_factory=True)
            lines.append(f"  {prefix}{name} = {default!r}\n      {field.description or ''}")

    walk(RunConfig, "")
    return "\n".join(lines)
