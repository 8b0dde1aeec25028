"""The FastAPI app: OpenAI's ``/v1/models``, ``/v1/chat/completions`` and ``/v1/completions``,
tunelab's ``/v1/classify``, and ``/health`` and ``/metrics``."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from tunelab.workflows.serve.batching import Batcher, Busy, Job, Limits
from tunelab.workflows.serve.inference import run_classification, run_generation
from tunelab.workflows.serve.metrics import Metrics
from tunelab.workflows.serve.protocol import ApiError, Guard, install_handlers
from tunelab.workflows.serve.schemas import (
    ChatRequest,
    ClassifyRequest,
    CompletionRequest,
    SamplingRequest,
)
from tunelab.workflows.serve.targets import CLASSIFICATION, GENERATION, Member


@dataclass
class Served:
    """What one app serves, and its batcher."""

    members: dict[str, Member]
    limits: Limits
    batcher: Batcher
    metrics: Metrics
    started: int

    def member(self, name: str, kind: str) -> Member:
        m = self.members.get(name)
        if m is None:
            raise ApiError(
                404,
                f"model: no model {name!r} is served here; GET /v1/models lists "
                f"{', '.join(self.members)}",
                "model",
                code="model_not_found",
            )
        if m.kind != kind:
            raise ApiError(
                400, f"model: {name!r} is a {m.task.kind} model; use {m.endpoint}", "model"
            )
        return m


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class Generation:
    """Turns a validated request into jobs, and jobs' events into OpenAI responses."""

    def __init__(self, served: Served):
        self.s = served

    def prompt_ids(self, member: Member, prompt, param: str) -> list[int]:
        with member.group.lock:
            ids = member.task.prompt_ids(prompt)
        if len(ids) >= member.group.context:
            raise ApiError(
                400,
                f"{param}: the prompt has {len(ids)} tokens; this model's context is "
                f"{member.group.context} tokens",
                param,
                code="context_length_exceeded",
            )
        return ids

    def job(self, member: Member, ids: list[int], req: SamplingRequest) -> Job:
        task, limit = member.task, self.s.limits.max_tokens
        asked = req.requested_tokens()
        if asked is not None and asked > limit:
            raise ApiError(
                400, f"max_tokens: {asked} is over this server's limit of {limit}", "max_tokens"
            )
        room = member.group.context - (0 if member.group.seq2seq else len(ids))
        if asked is not None and asked > room:
            raise ApiError(
                400,
                f"max_tokens: {len(ids)} prompt tokens + {asked} would exceed this model's "
                f"context of {member.group.context} tokens",
                "max_tokens",
                code="context_length_exceeded",
            )
        sampled = None if req.temperature is None else req.temperature > 0
        kw = task.generation_kwargs(do_sample=sampled, temperature=req.temperature, top_p=req.top_p)
        max_tokens = min(asked or kw.pop("max_new_tokens"), room, limit)
        sampling = {k: v for k, v in kw.items() if k in ("do_sample", "temperature", "top_p")}
        lane = uuid.uuid4().hex if req.seed is not None else None  # a seeded request runs alone
        key = member.batch_key(tuple(sorted(sampling.items())), lane)
        return Job(
            member,
            key,
            asyncio.get_running_loop(),
            prompt_ids=ids,
            max_tokens=max_tokens,
            stops=req.stops(),
            sampling=sampling,
            seed=req.seed,
        )

    def submit(self, *jobs: Job) -> Job:
        """Queue the jobs of one request (all or none); returns the first."""
        for i, job in enumerate(jobs):
            try:
                self.s.batcher.submit(job)
            except Busy as e:
                for queued in jobs[:i]:
                    self.s.batcher.cancel(queued)
                raise ApiError(429, str(e), type="server_busy") from None
        return jobs[0]

    async def result(self, job: Job) -> Any:
        """The job's final value (the request waits; its deltas are dropped)."""
        try:
            while True:
                kind, value = await job.events.get()
                if kind == "done":
                    return value
                if kind == "error":
                    raise ApiError(500, f"the model failed: {value}", type="server_error")
        finally:
            if not job.finished:
                self.s.batcher.cancel(job)

    def count(self, member: Member, done: dict[str, Any]) -> None:
        self.s.metrics.tokens(member.name, done["prompt_tokens"], done["completion_tokens"])

    async def stream(self, job: Job, chunk, include_usage: bool):
        """Server-sent events: ``chunk(delta, finish_reason)`` per event, then ``[DONE]``.
        A client that goes away cancels its job, which frees its row of the batch."""
        try:
            first = chunk(None, None)
            if first is not None:
                yield _sse(first)
            while True:
                kind, value = await job.events.get()
                if kind == "delta":
                    yield _sse(chunk(value, None))
                elif kind == "error":
                    yield _sse({"error": {"message": str(value), "type": "server_error"}})
                    break
                else:
                    self.count(job.member, value)
                    yield _sse(chunk("", value["finish_reason"]))
                    if include_usage:
                        usage = _usage(value["prompt_tokens"], value["completion_tokens"])
                        yield _sse({**chunk("", None), "choices": [], "usage": usage})
                    break
            yield "data: [DONE]\n\n"
        finally:
            if not job.finished:
                self.s.batcher.cancel(job)


def _messages(req: ChatRequest, member: Member):
    """The request's messages as the task's prompt (its chat template, as ``tunelab chat``)."""
    msgs = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        for m in req.messages
    ]
    for i, m in enumerate(msgs):
        if not m["content"].strip() and m["role"] == "user":
            raise ApiError(
                400, f"messages[{i}].content: must not be empty", f"messages[{i}].content"
            )
    if getattr(member.task, "use_chat", False):
        return msgs
    return "\n".join(m["content"] for m in msgs)


def build_app(
    members: dict[str, Member],
    limits: Limits | None = None,
    api_key: str | None = None,
    max_body_bytes: int = 1 << 20,
):
    """The ASGI app serving ``members`` (from :func:`~tunelab.workflows.serve.load_targets`)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    limits = limits or Limits()
    runners = {
        GENERATION: run_generation,
        CLASSIFICATION: lambda jobs: run_classification(jobs, limits.max_classify_batch),
    }
    batcher = Batcher(limits, runners)
    metrics = Metrics(batcher.in_flight, batcher.queued)
    batcher.on_batch = metrics.observe_batch
    served = Served(members, limits, batcher, metrics, int(time.time()))

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        batcher.stop()

    app = FastAPI(title="tunelab serve", lifespan=lifespan, max_body_size=max_body_bytes)
    app.state.served = served
    install_handlers(app)
    _routes(app, served)
    return Guard(app, api_key, metrics, max_body_bytes, batcher)


def _routes(app, served: Served) -> None:
    from fastapi.responses import Response

    gen = Generation(served)

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "models": list(served.members),
            "in_flight": served.batcher.in_flight(),
            "queued": served.batcher.queued(),
        }

    @app.get("/metrics")
    async def metrics():
        data, ctype = served.metrics.render()
        return Response(data, media_type=ctype)

    @app.get("/v1/models")
    async def models():
        data = [
            {"id": n, "object": "model", "created": served.started, "owned_by": "tunelab"}
            | m.describe()
            for n, m in served.members.items()
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest):
        return await _chat(gen, req)

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest):
        return await _completions(gen, req)

    @app.post("/v1/classify")
    async def classify(req: ClassifyRequest):
        return await _classify(served, gen, req)


def _include_usage(req: SamplingRequest) -> bool:
    return bool(req.stream_options and req.stream_options.include_usage)


async def _chat(gen: Generation, req: ChatRequest):
    from fastapi.responses import StreamingResponse

    member = gen.s.member(req.model, GENERATION)
    ids = gen.prompt_ids(member, _messages(req, member), "messages")
    job = gen.submit(gen.job(member, ids, req))
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": member.name,
    }
    if req.stream:

        def chunk(delta, finish):
            d = {"role": "assistant", "content": ""} if delta is None else {"content": delta}
            choice = {"index": 0, "delta": {} if finish else d, "finish_reason": finish}
            return {**base, "object": "chat.completion.chunk", "choices": [choice]}

        events = gen.stream(job, chunk, _include_usage(req))
        return StreamingResponse(events, media_type="text/event-stream")
    done = await gen.result(job)
    gen.count(member, done)
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": done["text"]},
        "finish_reason": done["finish_reason"],
        "logprobs": None,
    }
    usage = _usage(done["prompt_tokens"], done["completion_tokens"])
    return {**base, "choices": [choice], "usage": usage}


async def _completions(gen: Generation, req: CompletionRequest):
    from fastapi.responses import StreamingResponse

    member = gen.s.member(req.model, GENERATION)
    single = isinstance(req.prompt, str)
    prompts = [req.prompt] if single else list(req.prompt)
    if not prompts:
        raise ApiError(400, "prompt: give at least one prompt", "prompt")
    if req.stream and len(prompts) > 1:
        raise ApiError(400, "prompt: a streamed completion takes one prompt", "prompt")
    most = gen.s.limits.max_inputs
    if len(prompts) > most:
        raise ApiError(
            400, f"prompt: {len(prompts)} prompts is over this server's limit of {most}", "prompt"
        )
    for i, p in enumerate(prompts):
        where = "prompt" if single else f"prompt[{i}]"
        if not p.strip():
            raise ApiError(400, f"{where}: must not be empty", where)
    jobs = [gen.job(member, gen.prompt_ids(member, p, "prompt"), req) for p in prompts]
    gen.submit(*jobs)
    base = {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": member.name,
    }

    def choice(i: int, text: str, finish) -> dict[str, Any]:
        return {"index": i, "text": text, "finish_reason": finish, "logprobs": None}

    if req.stream:

        def chunk(delta, finish):
            return None if delta is None else {**base, "choices": [choice(0, delta, finish)]}

        events = gen.stream(jobs[0], chunk, _include_usage(req))
        return StreamingResponse(events, media_type="text/event-stream")
    done = await asyncio.gather(*(gen.result(j) for j in jobs))
    for d in done:
        gen.count(member, d)
    usage = _usage(sum(d["prompt_tokens"] for d in done), sum(d["completion_tokens"] for d in done))
    choices = [choice(i, d["text"], d["finish_reason"]) for i, d in enumerate(done)]
    return {**base, "choices": choices, "usage": usage}


def _check_inputs(member: Member, texts: list[str], pairs: list[str] | None, most: int) -> None:
    if not texts:
        raise ApiError(400, "input: give at least one text", "input")
    if len(texts) > most:
        raise ApiError(
            400, f"input: {len(texts)} texts is over this server's limit of {most}", "input"
        )
    paired = member.task.paired
    if paired and pairs is None:
        raise ApiError(400, "input: this model classifies text pairs: give [text, pair]s", "input")
    if pairs is not None and not paired:
        raise ApiError(400, "input: this model classifies single texts, not pairs", "input")
    for i, t in enumerate(texts):
        if not t.strip() or (pairs is not None and not pairs[i].strip()):
            raise ApiError(400, f"input[{i}]: must not be empty", f"input[{i}]")


async def _classify(served: Served, gen: Generation, req: ClassifyRequest):
    member = served.member(req.model, CLASSIFICATION)
    texts, pairs = req.texts()
    _check_inputs(member, texts, pairs, served.limits.max_inputs)
    with member.group.lock:
        split = member.task.texts_split(texts, pairs)
    loop = asyncio.get_running_loop()
    job = Job(member, member.batch_key(), loop, size=len(texts), features=split.features)
    outputs = await gen.result(gen.submit(job))
    data = [{"index": i, **_shown(a)} for i, a in enumerate(member.task.answers(split, outputs))]
    tokens = sum(len(f["input_ids"]) for f in split.features)
    served.metrics.tokens(member.name, tokens, 0)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "model": member.name, "data": data, "usage": usage}


def _shown(answer: dict[str, Any]) -> dict[str, Any]:
    """A task's answer as /v1/classify gives it: a single label also gets its probability."""
    if "label" in answer:
        return {
            "label": answer["label"],
            "probability": answer["probabilities"][answer["label"]],
            "probabilities": answer["probabilities"],
        }
    return answer
