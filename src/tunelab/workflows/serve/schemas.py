"""Request bodies of the OpenAI-compatible endpoints (pydantic validates every field).

Fields that OpenAI defines and tunelab does not implement are refused with a 400 naming them
(``n`` > 1, ``logprobs``, ...), so a client never silently gets something else than it asked
for; fields this server does not know are ignored, as OpenAI's own server does.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: OpenAI's limit on stop sequences
MAX_STOP = 4


class Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)


class SamplingRequest(Request):
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="one choice per request")
    logprobs: bool | int | None = None

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, v):
        if v:
            raise ValueError("logprobs are not supported by tunelab serve")
        return v

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > MAX_STOP or any(not s for s in stops):
            raise ValueError(f"at most {MAX_STOP} non-empty stop strings")
        return v

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def requested_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class StreamOptions(BaseModel):
    include_usage: bool = False


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class ChatRequest(SamplingRequest):
    messages: list[Message] = Field(min_length=1)


class CompletionRequest(SamplingRequest):
    prompt: str | list[str]
    echo: bool = False
    suffix: str | None = None

    @field_validator("echo", "suffix")
    @classmethod
    def _unsupported(cls, v, info):
        if v:
            raise ValueError(f"{info.field_name} is not supported by tunelab serve")
        return v


class ClassifyRequest(Request):
    input: str | list[str] | list[tuple[str, str]]

    def texts(self) -> tuple[list[str], list[str] | None]:
        """The first texts, and the second texts of text pairs (None for single texts)."""
        items = [self.input] if isinstance(self.input, str) else list(self.input)
        if items and all(isinstance(i, tuple) for i in items):
            return [a for a, _ in items], [b for _, b in items]
        return [str(i) for i in items], None


SamplingRequest.model_rebuild()
ChatRequest.model_rebuild()
CompletionRequest.model_rebuild()
