"""The sections of a run config (model, data, task, mixture, training, output, ...).

Each method's own section (``lora``, ``adapter``, ...) lives next to its method, in
``tunelab/methods/``; :mod:`tunelab.config.run` adds them from the registry."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
)

from tunelab.data.templates import TEMPLATES
from tunelab.errors import ConfigError
from tunelab.evaluation.perturb import check_perturbations
from tunelab.utils.settings import Section, yaml_words


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
    test_fraction: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="Hold out this seeded share of train as the test split (instead of "
        "data.test); carved out before validation and training rows are drawn.",
    )
    train_split: str = Field("train", description="Split name for hub datasets.")
    validation_split: str = Field("validation", description="Split name for hub datasets.")
    test_split: str = Field("test", description="Split name for hub datasets.")
    text_column: str = Field("text", description="Column holding the (first) text.")
    text_pair_column: str | None = Field(None, description="Column holding the second text.")
    label_column: str = Field("label", description="Column holding the label.")
    columns: list[str] | None = Field(
        None,
        description="Column names of a CSV/TSV file without a header row (GLUE's CoLA); unset: "
        "the first row is the header.",
    )
    tokens_column: str = Field(
        "tokens", description="token_classification: the column holding a row's words."
    )
    tags_column: str = Field(
        "tags", description="token_classification: the column holding one tag per word."
    )
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

    @field_validator("test_fraction")
    @classmethod
    def _one_test_source(cls, v: float | None, info) -> float | None:
        if v is not None and info.data.get("test"):
            raise ValueError("give data.test (a file) or data.test_fraction, not both")
        return v


class TaskConfig(Section):
    type: Literal[
        "classification",
        "generation",
        "regression",
        "multi_label",
        "token_classification",
        "multiple_choice",
        "preference",
    ] = Field(
        "classification",
        description="What the model learns to do: `classification` (a label per text), "
        "`generation` (text from text: instructions, chat, summaries, answers, translations, "
        "or plain documents), `regression` (a score per text: MSE, Pearson/Spearman), "
        "`multi_label` (a list of labels per text: sigmoid + BCE, micro/macro F1), "
        "`token_classification` (a tag per word: entity P/R/F1), `multiple_choice` (one of "
        "several answers to a context) or `preference` (a preferred over a rejected response "
        "to each prompt: DPO and its family, settings under `preference:`).",
    )
    text_template: str | None = Field(
        None,
        description="Encoder tasks: build the (first) text from each row with this template "
        "instead of data.text_column (Python fields or Jinja, as task.prompt), e.g. "
        "`{premise} What was the {question}?`.",
    )
    pair_template: str | None = Field(
        None, description="Encoder tasks: the second text from a template (as text_template)."
    )
    label_scale: float = Field(
        1.0,
        gt=0,
        description="regression: train on label / label_scale (STS-B's 0-5 with 5); "
        "predictions and metrics are in the label's own scale.",
    )
    label_all_tokens: bool = Field(
        False,
        description="token_classification: every sub-word of a word is trained and scored "
        "with the word's tag; off: only the first sub-word (the rest are ignored).",
    )
    choice_columns: list[str] | None = Field(
        None,
        description="multiple_choice: the columns holding the answers (e.g. [choice1, "
        "choice2]); or give one column holding a list of answers as `choices_column`.",
    )
    choices_column: str | None = Field(
        None, description="multiple_choice: the column holding a list of answers per row."
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
    _choice_words = field_validator("choices", mode="before")(yaml_words)
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
    prompt: str | None = Field(
        None,
        description="format=prompt_completion: build each prompt from its row with this "
        "template, as lm-evaluation-harness's doc_to_text: `{passage}\\nQuestion: "
        "{question}?\\nAnswer:` (Python fields, dotted paths) or Jinja (`{{ passage }}`).",
    )
    target_delimiter: str | None = Field(
        None,
        description="What stands between a prompt and its answer (lm-evaluation-harness's "
        "target_delimiter). Unset: choice scoring puts ' ' before each choice (lm-eval's "
        "default; nothing after a chat template), and plain prompts of generation tasks end "
        "with a newline. Set: prompts end as written and every answer starts with it.",
    )
    text_scoring: Literal["stream", "document"] = Field(
        "stream",
        description="format=text: `stream` scores every row in one EOS-separated stream of "
        "model.max_length blocks; `document` scores each row as its own document from its "
        "start (lm-evaluation-harness's loglikelihood_rolling: the first token predicted from "
        "the BOS/prefix token). Word and byte counts come from `fields.original` if given.",
    )


class PreferenceConfig(Section):
    """task.type=preference: rows of a prompt with a chosen and a rejected response."""

    loss: Literal["dpo", "ipo", "hinge", "simpo", "orpo"] = Field(
        "dpo",
        description="`dpo`: sigmoid DPO (Rafailov et al.); `ipo` (Azar et al., length-"
        "normalised as TRL); `hinge` (SLiC); `simpo` (Meng et al., no reference model); "
        "`orpo` (Hong et al.: chosen NLL + odds-ratio term, no reference model). Each as "
        "TRL 1.16 defines it.",
    )
    beta: float = Field(
        0.1, gt=0, description="β: the strength of the preference (DPO's KL temperature)."
    )
    label_smoothing: float = Field(
        0.0,
        ge=0,
        lt=0.5,
        description="dpo, simpo: the share of pairs assumed flipped (conservative DPO).",
    )
    gamma: float = Field(0.5, ge=0, description="simpo: the target reward margin γ.")
    orpo_lambda: float = Field(
        0.1, gt=0, description="orpo: λ, the weight of the odds-ratio term (TRL's beta)."
    )
    max_prompt_length: int | None = Field(
        None,
        ge=1,
        description="Prompt tokens kept at most (cut from the left). A pair longer than "
        "model.max_length loses prompt tokens from the left first (down to this, or half of "
        "max_length when unset), then response tokens from the end.",
    )
    reference: Literal["auto", "frozen_copy", "precomputed"] = Field(
        "auto",
        description="The reference model of dpo/ipo/hinge: `auto` = the model with the method's "
        "own weights switched off (LoRA, DoRA, IA3, adapter, prefix, prompt: no second copy), "
        "else a frozen copy (full, freeze, bitfit); `frozen_copy`; `precomputed`: one scoring "
        "pass before training, kept in the run directory and reused on resume.",
    )
    share_prompt: bool = Field(
        True,
        description="Causal LMs attending through SDPA: one row per pair, the prompt once and "
        "each response attending to it and not to the other (a 4D attention mask, positions "
        "as if alone), so the prompt's tokens are computed once, not twice. Off, or where it "
        "does not apply (seq2seq, prefix/prompt tuning, other attention kernels, a sliding "
        "window): chosen and rejected as two rows, as TRL.",
    )
    generate: int = Field(
        4, ge=0, description="Held-out prompts generated for at each evaluation (predictions/)."
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

    @field_validator("perturbations")
    @classmethod
    def _known_perturbations(cls, v: list[str]) -> list[str]:
        try:
            check_perturbations(v, "")
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return v


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
    group_by_length: bool | None = Field(
        None,
        description="Batch examples of similar length together (less padding); unset: on, "
        "except for token_classification, where length-grouped batches cost entity F1.",
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

    # -- experiment trackers (training/trackers.py) ------------------------------------------
    report_to: list[Literal["tensorboard", "mlflow", "wandb", "trackio"]] = Field(
        default_factory=list,
        description="Experiment trackers that get every metrics.jsonl row, the resolved config "
        "and (MLflow) the model, through Accelerate's integrations; `metrics.jsonl` is always "
        "written. A list, or `tensorboard,mlflow`; `none`: no tracker.",
    )
    tracker_project: str = Field(
        "tunelab",
        min_length=1,
        description="The tracker's project (W&B, Trackio; MLflow: the experiment name; "
        "TensorBoard: the folder under RUN/trackers/).",
    )
    tracker_run_name: str | None = Field(
        None, min_length=1, description="The run's name in the trackers; unset: the run dir name."
    )
    tracker_group: str | None = Field(
        None,
        min_length=1,
        description="Groups runs (the trials of a study, the stages of a pipeline): W&B and "
        "Trackio group, MLflow tag `tunelab.group`.",
    )
    tracker_log_model: bool = Field(
        True, description="Upload RUN/model as an artifact where the tracker stores files (MLflow)."
    )

    @field_validator("report_to", mode="before")
    @classmethod
    def _report_to_list(cls, v: Any) -> Any:
        if v is None or (isinstance(v, str) and v.strip().lower() in ("", "none")):
            return []
        if isinstance(v, str):
            v = v.split(",")
        if isinstance(v, list | tuple):
            items = [x.strip().lower() if isinstance(x, str) else x for x in v]
            return list(dict.fromkeys(x for x in items if x != "none"))
        return v


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


def check_template(tc: TaskConfig, key: str) -> None:
    """A ``format=template`` task must name a shipped template set."""
    if tc.type == "generation" and tc.format == "template" and tc.template not in TEMPLATES:
        raise ValueError(
            f"{key}.template: {tc.template!r} is not a shipped template; "
            f"allowed: {', '.join(TEMPLATES)}"
        )
