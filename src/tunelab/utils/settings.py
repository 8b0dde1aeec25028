"""The base of every typed settings section (config sections and each method's own settings)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base for config sections: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def yaml_words(v: Any) -> Any:
    """YAML 1.1 reads unquoted yes/no/on/off as booleans: give them back as words."""
    if isinstance(v, list):
        return ["yes" if x is True else "no" if x is False else x for x in v]
    return v
