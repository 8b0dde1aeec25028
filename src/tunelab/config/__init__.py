"""The typed run configuration (:mod:`tunelab.config.run`) and its sections."""

from tunelab.config.run import (
    RunConfig,
    config_help,
    deep_merge,
    format_validation_error,
    load_config,
    parse_overrides,
    top_level_keys,
)
from tunelab.config.sections import (
    AugmentConfig,
    CurriculumConfig,
    DataConfig,
    MixtureConfig,
    ModelConfig,
    OutputConfig,
    PhaseConfig,
    PreferenceConfig,
    StageSpec,
    TaskConfig,
    TaskSpec,
    TrainingConfig,
)
from tunelab.utils.settings import Section

__all__ = [
    "AugmentConfig",
    "CurriculumConfig",
    "DataConfig",
    "MixtureConfig",
    "ModelConfig",
    "OutputConfig",
    "PhaseConfig",
    "PreferenceConfig",
    "RunConfig",
    "Section",
    "StageSpec",
    "TaskConfig",
    "TaskSpec",
    "TrainingConfig",
    "config_help",
    "deep_merge",
    "format_validation_error",
    "load_config",
    "parse_overrides",
    "top_level_keys",
]
