"""`tunelab serve`: the OpenAI-compatible server, driven by the official `openai` client.

Servers run on a free 127.0.0.1 port, in a thread (or, for the CLI and SIGTERM, a subprocess);
every request loop is bounded in count and time.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

import tunelab
from helpers import KEY, ThreadServer, gen_rows, keyword_files, tiny_config, write_jsonl

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

PROMPTS = ["the movie was good", "this film felt awful", "a story of music"]
TEXTS = ["a superb film", "the plot was dull and weak", "it was okay"]


def _train(model: Path, data: dict, out: Path, name: str, **over) -> Path:
    cfg = tiny_config(model, data, out, **over)
    cfg["output"]["name"] = name
    return tunelab.train(cfg).run_dir


@pytest.fixture(scope="module")
def runs(tiny_llama, tiny_bert, tmp_path_factory) -> dict[str, Path]:
    """Generation runs on tiny Llama (two LoRA, one IA3) and classification runs on tiny BERT
    (two LoRA, one BitFit), trained for a few steps."""
    root = tmp_path_factory.mktemp("serve-runs")
    gen = {
        "train": write_jsonl(root / "gen" / "train.jsonl", gen_rows(64, 0)),
        "validation": write_jsonl(root / "gen" / "val.jsonl", gen_rows(8, 1)),
    }
    kw = keyword_files(root / "kw")
    g = {
        "task.type": "generation",
        "task.format": "prompt_completion",
        "task.max_new_tokens": 6,
        "training.max_steps": 12,
        "training.lr": 2e-2,
    }
    c = {"training.max_steps": 12, "training.lr": 3e-2}
    out = root / "runs"
    return {
        "g1": _train(tiny_llama, gen, out, "g1", method="lora", **g),
        "g2": _train(tiny_llama, gen, out, "g2", method="lora", **{**g, "training.seed": 1}),
        "g3": _train(tiny_llama, gen, out, "g3", method="ia3", **g),
        "c1": _train(tiny_bert, kw, out, "c1", method="lora", **c),
        "c2": _train(tiny_bert, kw, out, "c2", method="lora", **{**c, "training.seed": 1}),
        "c3": _train(tiny_bert, kw, out, "c3", method="bitfit", **c),
    }


@pytest.fixture(scope="module")
def slow_llama(tmp_path_factory) -> Path:
    """A random Llama with a long context that never ends a greedy answer (its end-of-sequence
    logit is always 0, below the best of the others): a generation runs to max_tokens."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from conftest import _tokenizer

    folder = tmp_path_factory.mktemp("slow-llama")
    tok = _tokenizer()
    torch.manual_seed(0)
    size = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    cfg = LlamaConfig(
        vocab_size=len(tok),
        intermediate_size=128,
        max_position_embeddings=2048,
        num_key_value_heads=2,
        pad_token_id=0,
        **size,
    )
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        model.lm_head.weight[tok.eos_token_id] = 0
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def server(runs, slow_llama):
    from tunelab.workflows.serve import Limits, build_app, load_targets

    members = load_targets([str(runs[n]) for n in runs] + [f"slow={slow_llama}"])
    srv = ThreadServer(build_app(members, Limits(wait_ms=50, max_tokens=1200), api_key=KEY))
    yield srv
    srv.close()


# ---- the OpenAI client: models, chat, streaming, completions ----


def test_models_list_and_health(server, runs):
    models = server.client().models.list()
    assert [m.id for m in models.data] == [*runs, "slow"]
    by_id = {m.id: m.model_dump() for m in models.data}
    assert by_id["g1"]["task"] == "generation" and by_id["g1"]["adapter"] is True
    assert by_id["c3"]["labels"] == ["negative", "positive"] and by_id["c3"]["adapter"] is False
    health = server.get("/health", key=None).json()
    assert health["status"] == "ok" and health["in_flight"] == 0


def test_adapters_of_one_base_share_it(server):
    served = server.server.config.app.app.state.served.members
    assert served["g1"].group is served["g2"].group  # two LoRA runs: one copy of the base
    assert served["g1"].mixed and served["g2"].mixed
    assert served["g3"].group is not served["g1"].group  # IA3: another PEFT tuner type
    assert served["c1"].group is served["c2"].group
    assert not served["c1"].mixed  # BERT's pooler is a trained head PEFT cannot mix in a batch


@pytest.mark.parametrize("name", ["g1", "g2", "g3"])
def test_greedy_chat_and_completion_equal_tunelab_generate(server, runs, name):
    client = server.client()
    expected = tunelab.generate(runs[name], PROMPTS)
    for prompt, want in zip(PROMPTS, expected):
        chat = client.chat.completions.create(
            model=name, messages=[{"role": "user", "content": prompt}], temperature=0
        )
        assert chat.choices[0].message.content == want
        assert chat.choices[0].finish_reason in ("stop", "length")
        task = tunelab.load_run(runs[name]).task
        assert chat.usage.prompt_tokens == len(task.prompt_ids(prompt))
        assert 1 <= chat.usage.completion_tokens <= 6  # the run's max_new_tokens is the default
        done = client.completions.create(model=name, prompt=prompt, max_tokens=4)
        assert done.choices[0].text == tunelab.generate(runs[name], [prompt], max_new_tokens=4)[0]


def test_streaming_chat_gives_the_same_text_and_usage(server):
    client = server.client()
    messages = [{"role": "user", "content": PROMPTS[0]}]
    whole = client.chat.completions.create(model="g1", messages=messages, max_tokens=5)
    chunks = list(
        client.chat.completions.create(
            model="g1",
            messages=messages,
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    stream = client.completions.create(model="slow", prompt="the plot", max_tokens=20, stream=True)
    pieces = [c.choices[0].text for c in stream]
    assert len(pieces) > 2
    once = client.completions.create(model="slow", prompt="the plot", max_tokens=20)
    assert "".join(pieces) == once.choices[0].text and once.choices[0].finish_reason == "length"
    assert once.usage.completion_tokens == 20


def test_stop_strings_and_seeded_sampling(server):
    client = server.client()
    full = client.completions.create(model="slow", prompt="a film", max_tokens=12).choices[0].text
    words = full.split()
    assert len(words) > 3
    cut = client.completions.create(model="slow", prompt="a film", max_tokens=12, stop=[words[2]])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == full[: full.index(words[2])].strip()
    sampled = [
        client.completions.create(
            model="slow", prompt="a film", max_tokens=8, temperature=1.0, seed=7
        ).choices[0]
        for _ in range(2)
    ]
    assert sampled[0].text == sampled[1].text  # a seed makes sampling repeatable


def _batch_sizes(server) -> tuple[float, float]:
    text = server.get("/metrics", key=None).text
    count = re.search(r'tunelab_batch_size_count\{kind="generation"\} (\S+)', text)
    total = re.search(r'tunelab_batch_size_sum\{kind="generation"\} (\S+)', text)
    return (float(count[1]), float(total[1])) if count else (0.0, 0.0)


def test_concurrent_requests_of_two_adapters_share_batches(server, runs):
    expected = {n: tunelab.generate(runs[n], PROMPTS) for n in ("g1", "g2")}
    client = server.client()
    before = _batch_sizes(server)
    work = [(n, i) for n in ("g1", "g2") for i in range(len(PROMPTS))] * 2
    runners = server.server.config.app.app.state.served.batcher.runners
    run, seen = runners["generation"], []

    def recording(jobs):
        seen.append({j.member.name for j in jobs})
        return run(jobs)

    runners["generation"] = recording

    def ask(item):
        name, i = item
        msg = [{"role": "user", "content": PROMPTS[i]}]
        out = client.chat.completions.create(model=name, messages=msg, temperature=0)
        return out.choices[0].message.content

    try:
        with ThreadPoolExecutor(len(work)) as pool:
            got = list(pool.map(ask, work))
    finally:
        runners["generation"] = run
    assert got == [expected[n][i] for n, i in work]  # each row kept its own adapter
    assert {"g1", "g2"} in seen  # rows of both adapters went through the model together
    after = _batch_sizes(server)
    batches, rows = after[0] - before[0], after[1] - before[1]
    assert rows == len(work) and batches < len(work)  # some went through the model together
    text = server.get("/metrics", key=None).text
    assert 'tunelab_requests_total{path="/v1/chat/completions",status="200"}' in text
    assert re.search(r'tunelab_generated_tokens_total\{model="g1"\} [1-9]', text)
    assert "tunelab_request_latency_seconds_bucket" in text


def test_classify_equals_tunelab_predict(server, runs):
    for name in ("c1", "c2", "c3"):
        res = server.post("/v1/classify", {"model": name, "input": TEXTS})
        assert res.status_code == 200, res.text
        body = res.json()
        expected = tunelab.predict(runs[name], texts=TEXTS)
        assert [d["label"] for d in body["data"]] == [e["label"] for e in expected]
        for d, e in zip(body["data"], expected):
            assert d["probabilities"] == pytest.approx(e["probabilities"], abs=2e-6)
            assert d["probability"] == pytest.approx(max(e["probabilities"].values()), abs=2e-6)
    one = server.post("/v1/classify", {"model": "c1", "input": TEXTS[0]}).json()
    assert len(one["data"]) == 1 and one["usage"]["prompt_tokens"] > 0


def test_concurrent_classify_of_two_adapters(server, runs):
    expected = {n: tunelab.predict(runs[n], texts=TEXTS) for n in ("c1", "c2")}
    work = [(n, t) for n in ("c1", "c2") for t in range(len(TEXTS))] * 2
    with ThreadPoolExecutor(len(work)) as pool:
        got = list(
            pool.map(
                lambda w: server.post("/v1/classify", {"model": w[0], "input": [TEXTS[w[1]]]}),
                work,
            )
        )
    for (name, t), res in zip(work, got):
        probs = res.json()["data"][0]["probabilities"]
        assert probs == pytest.approx(expected[name][t]["probabilities"], abs=2e-6)


# ---- bad input: a 4xx naming the field, and the server keeps serving ----

MSG = [{"role": "user", "content": "the movie was good"}]
LONG = " ".join(["good"] * 80)  # over the tiny Llama's 64 positions
BAD = [
    ("/v1/chat/completions", b'{"model": "g1", "messages": [', 400, "body"),
    ("/v1/chat/completions", b"[1, 2]", 400, "body"),
    ("/v1/chat/completions", {"model": "g1", "messages": "hi"}, 400, "messages"),
    (
        "/v1/chat/completions",
        {"model": "g1", "messages": MSG, "max_tokens": "ten"},
        400,
        "max_tokens",
    ),
    (
        "/v1/chat/completions",
        {"model": "g1", "messages": MSG, "temperature": "hot"},
        400,
        "temperature",
    ),
    ("/v1/chat/completions", {"model": 5, "messages": MSG}, 400, "model"),
    ("/v1/chat/completions", {"messages": MSG}, 400, "model"),
    ("/v1/chat/completions", {"model": "nope", "messages": MSG}, 404, "model"),
    ("/v1/chat/completions", {"model": "c1", "messages": MSG}, 400, "model"),
    ("/v1/chat/completions", {"model": "g1", "messages": []}, 400, "messages"),
    (
        "/v1/chat/completions",
        {"model": "g1", "messages": [{"role": "user", "content": " "}]},
        400,
        "messages[0].content",
    ),
    (
        "/v1/chat/completions",
        {"model": "g1", "messages": [{"role": "robot", "content": "x"}]},
        400,
        "messages[0].role",
    ),
    (
        "/v1/chat/completions",
        {"model": "g1", "messages": [{"role": "user", "content": LONG}]},
        400,
        "messages",
    ),
    (
        "/v1/chat/completions",
        {"model": "g1", "messages": MSG, "max_tokens": 5000},
        400,
        "max_tokens",
    ),
    ("/v1/chat/completions", {"model": "g1", "messages": MSG, "max_tokens": 60}, 400, "max_tokens"),
    ("/v1/chat/completions", {"model": "g1", "messages": MSG, "max_tokens": 0}, 400, "max_tokens"),
    ("/v1/chat/completions", {"model": "g1", "messages": MSG, "n": 2}, 400, "n"),
    ("/v1/chat/completions", {"model": "g1", "messages": MSG, "logprobs": True}, 400, "logprobs"),
    ("/v1/chat/completions", {"model": "g1", "messages": MSG, "stop": list("abcde")}, 400, "stop"),
    ("/v1/chat/completions", {"model": "g1", "messages": MSG, "top_p": 0}, 400, "top_p"),
    ("/v1/completions", {"model": "g1", "prompt": ""}, 400, "prompt"),
    ("/v1/completions", {"model": "g1", "prompt": [1, 2, 3]}, 400, "prompt"),
    ("/v1/completions", {"model": "g1", "prompt": ["a", " "]}, 400, "prompt[1]"),
    ("/v1/completions", {"model": "g1", "prompt": LONG}, 400, "prompt"),
    ("/v1/completions", {"model": "g1", "prompt": ["a", "b"], "stream": True}, 400, "prompt"),
    ("/v1/completions", {"model": "g1", "prompt": "a", "echo": True}, 400, "echo"),
    ("/v1/classify", {"model": "c1", "input": []}, 400, "input"),
    ("/v1/classify", {"model": "c1", "input": ["a film", ""]}, 400, "input[1]"),
    ("/v1/classify", {"model": "c1", "input": [["a", "b"]]}, 400, "input"),
    ("/v1/classify", {"model": "c1", "input": [{"text": "a"}]}, 400, "input"),
    ("/v1/classify", {"model": "c1", "input": ["a"] * 300}, 400, "input"),
    ("/v1/classify", {"model": "g1", "input": ["a"]}, 400, "model"),
    ("/v1/classify", {"model": "c1"}, 400, "input"),
    (
        "/v1/chat/completions",
        b'{"model": "g1", "messages": [], "pad": "' + b"x" * (2 << 20) + b'"}',
        413,
        "body",
    ),
]


@pytest.mark.parametrize("path,body,status,param", BAD, ids=[f"{p}:{q}" for p, _, _, q in BAD])
def test_bad_input_gets_a_4xx_naming_the_field(server, path, body, status, param):
    res = server.post(path, body)
    assert res.status_code == status, res.text
    err = res.json()["error"]
    assert err["param"] == param and err["message"] and err["type"] == "invalid_request_error"
    ok = server.post("/v1/chat/completions", {"model": "g1", "messages": MSG, "max_tokens": 2})
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] is not None


def test_classify_takes_pairs_for_a_pair_template_run():
    from types import SimpleNamespace

    from tunelab.tasks.classification import ClassificationTask
    from tunelab.workflows.serve.app import _check_inputs
    from tunelab.workflows.serve.protocol import ApiError

    # WiC's recipe fills its second text from a template, not a column
    member = SimpleNamespace(task=ClassificationTask(["no", "yes"], pair_template="{{ s2 }}"))
    _check_inputs(member, ["a bank of the river"], ["the bank lent money"], 8)
    with pytest.raises(ApiError, match="text pairs") as e:
        _check_inputs(member, ["a bank of the river"], None, 8)
    assert e.value.status == 400 and e.value.param == "input"
    single = SimpleNamespace(task=ClassificationTask(["no", "yes"]))
    with pytest.raises(ApiError, match="single texts"):
        _check_inputs(single, ["a"], ["b"], 8)


def test_chunked_oversized_body_and_unknown_paths(server):
    def chunks():
        for _ in range(40):
            yield b"x" * 65536

    res = server.post("/v1/chat/completions", chunks())  # no content-length: counted as read
    assert res.status_code == 413 and res.json()["error"]["param"] == "body"
    res = server.get("/v1/nothing")
    assert res.status_code == 404 and "error" in res.json()
    res = httpx.delete(server.url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert res.status_code == 405 and "error" in res.json()
    assert server.get("/health", key=None).json()["in_flight"] == 0


def test_api_key(server):
    with pytest.raises(openai.AuthenticationError):
        server.client(key="wrong").models.list()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        res = httpx.get(server.url + "/v1/models", headers=headers)
        assert res.status_code == 401 and res.json()["error"]["code"] == "invalid_api_key"
        res = httpx.post(server.url + "/v1/chat/completions", content=b"{", headers=headers)
        assert res.status_code == 401  # checked before the body is read
    assert server.get("/health", key=None).status_code == 200  # health and metrics stay open
    assert server.get("/metrics", key=None).status_code == 200
    assert server.client().models.list().data


def test_a_client_gone_mid_stream_frees_its_slot(slow_llama):
    from tunelab.workflows.serve import Limits, build_app, load_targets

    app = build_app(load_targets([f"slow={slow_llama}"]), Limits(max_pending=1, max_tokens=1500))
    srv = ThreadServer(app)
    try:
        client = srv.client()
        start = time.monotonic()
        full = client.completions.create(model="slow", prompt="a", max_tokens=1000)
        full_time = time.monotonic() - start
        assert full.choices[0].finish_reason == "length" and full.usage.completion_tokens == 1000
        with httpx.stream(
            "POST",
            srv.url + "/v1/completions",
            json={"model": "slow", "prompt": "a", "max_tokens": 1000, "stream": True},
            timeout=30,
        ) as res:
            lines = res.iter_lines()
            assert sum(1 for _, line in zip(range(3), lines) if line.startswith("data:")) >= 1
        start = time.monotonic()  # the stream is closed: its row must stop, the slot free up
        end = start + full_time
        while srv.get("/health").json()["in_flight"] and time.monotonic() < end:
            time.sleep(0.01)
        again = client.completions.create(model="slow", prompt="b", max_tokens=1)  # no 429
        assert again.usage.completion_tokens == 1
        assert time.monotonic() - start < full_time / 2
    finally:
        srv.close()


# ---- the CLI in a subprocess: TUNELAB_API_KEY, SIGTERM drains and exits 0 ----


def _start_cli(args: list[str], env: dict | None = None, timeout: float = 120.0):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunelab.cli", "serve", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    seen, url = [], None
    end = time.monotonic() + timeout
    while url is None and time.monotonic() < end:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if m := re.search(r"listening on (http://\S+)", line):
            url = m[1]
    if url is None:
        proc.kill()
        pytest.fail("tunelab serve did not start:\n" + "".join(seen))
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("tunelab serve never answered /health")


def test_sigterm_finishes_the_request_in_flight_and_exits_0(slow_llama):
    # a drain long enough for a loaded machine: the default 30 s cut this test's request once
    # while other benchmarks shared the two cores
    args = [f"slow={slow_llama}", "--drain-timeout", "300"]
    proc, url = _start_cli(args, env={"TUNELAB_API_KEY": "env-key"})
    try:
        assert httpx.get(url + "/v1/models").status_code == 401  # the key from the environment
        client = openai.OpenAI(base_url=url + "/v1", api_key="env-key", max_retries=0)
        result = {}

        def ask():
            result["r"] = client.completions.create(model="slow", prompt="a", max_tokens=1000)

        asker = threading.Thread(target=ask)
        asker.start()
        end = time.monotonic() + 30
        while httpx.get(url + "/health").json()["in_flight"] == 0:
            assert time.monotonic() < end
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        asker.join(120)
        assert result["r"].choices[0].finish_reason == "length"
        assert result["r"].usage.completion_tokens == 1000
        assert proc.wait(60) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/health", timeout=2)  # no longer accepting
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_request_cut_by_the_drain_timeout_gets_503_and_a_stream_an_error_event(slow_llama):
    args = [f"slow={slow_llama}", "--drain-timeout", "0.05", "--max-tokens", "2000"]
    proc, url = _start_cli(args)
    try:
        result, streamed = {}, threading.Event()
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)

        def ask():
            body = {"model": "slow", "prompt": "a", "max_tokens": 2000}
            result["r"] = httpx.post(url + "/v1/completions", json=body, timeout=120)

        def stream():
            chunks = client.chat.completions.create(
                model="slow",
                messages=[{"role": "user", "content": "b"}],
                max_tokens=2000,
                stream=True,
            )
            try:
                for _ in chunks:
                    streamed.set()
            except openai.APIError as e:
                result["stream"] = e

        threads = [threading.Thread(target=ask), threading.Thread(target=stream)]
        for t in threads:
            t.start()
        assert streamed.wait(60)
        while httpx.get(url + "/health").json()["in_flight"] < 2:
            assert threads[0].is_alive()
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(120)
        r = result["r"]
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "server_shutting_down"
        assert "--drain-timeout" in r.json()["error"]["message"]
        assert "--drain-timeout" in str(result["stream"])  # not a silently short answer
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("cut", ["before_answer", "mid_stream", "after_last_byte"])
def test_the_guard_answers_a_request_uvicorn_cancels(cut):
    import asyncio
    import json

    from tunelab.workflows.serve.metrics import Metrics
    from tunelab.workflows.serve.protocol import Guard

    async def app(scope, receive, send):
        if cut != "before_answer":
            kind = [(b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": kind})
            last = cut == "after_last_byte"
            await send(
                {"type": "http.response.body", "body": b"data: {}\n\n", "more_body": not last}
            )
        raise asyncio.CancelledError  # what uvicorn does when --drain-timeout runs out

    sent = []

    async def send(message):
        sent.append(message)

    metrics = Metrics(lambda: 0, lambda: 0)
    guard = Guard(app, None, metrics, 1 << 20, batcher=None)
    scope = {"type": "http", "path": "/health", "method": "GET", "headers": []}
    asyncio.run(guard(scope, None, send))

    def counted(status: str):
        labels = {"path": "/health", "status": status}
        return metrics.registry.get_sample_value("tunelab_requests_total", labels)

    if cut == "after_last_byte":  # nothing was lost: nothing is added
        assert len(sent) == 2 and counted("200") == 1.0
        return
    assert counted("503") == 1.0 and counted("200") is None
    last = sent[-1]
    assert last["type"] == "http.response.body" and not last.get("more_body")
    if cut == "before_answer":
        assert sent[0]["status"] == 503
        error = json.loads(last["body"])["error"]
    else:
        assert last["body"].startswith(b"data: ")
        error = json.loads(last["body"][len(b"data: ") :])["error"]
    assert error["code"] == "server_shutting_down" and error["type"] == "server_error"


def test_cli_refuses_a_bad_target_and_flag(runs, tmp_path, capsys):
    from tunelab.cli import main

    assert main(["serve", str(tmp_path / "missing-run"), "--port", "0"]) == 2
    assert "missing-run" in capsys.readouterr().err
    assert main(["serve", str(runs["g1"]), "--max-batch-size", "0"]) == 2
    assert "--max-batch-size" in capsys.readouterr().err
    assert main(["serve", str(runs["g1"]), "--drain-timeout", "-1"]) == 2
    assert "--drain-timeout" in capsys.readouterr().err


# ---- real models ----


@pytest.mark.integration
def test_embedded_smollm2_served_equals_tunelab_generate():
    from tunelab.workflows.serve import build_app, load_targets

    srv = ThreadServer(build_app(load_targets(["smollm2-135m-instruct"])))
    try:
        client = srv.client(key=None)
        prompt = "Name one colour of the sky."
        want = tunelab.generate("smollm2-135m-instruct", [prompt], max_new_tokens=12)[0]
        messages = [{"role": "user", "content": prompt}]
        chat = client.chat.completions.create(
            model="smollm2-135m-instruct", messages=messages, max_tokens=12, temperature=0
        )
        assert chat.choices[0].message.content == want and want
        stream = client.chat.completions.create(
            model="smollm2-135m-instruct", messages=messages, max_tokens=12, stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream) == want
    finally:
        srv.close()


@pytest.mark.integration
def test_minilm_classification_run_served_equals_predict(tmp_path):
    from tunelab.data.demo import write_demo_dataset
    from tunelab.workflows.demo import demo_config_dict
    from tunelab.workflows.serve import build_app, load_targets

    paths = write_demo_dataset(tmp_path / "data", n_train=96, n_validation=32, n_test=32)
    res = tunelab.train(
        demo_config_dict(),
        [
            f"data.train={paths['train']}",
            f"data.validation={paths['validation']}",
            f"data.test={paths['test']}",
            f"output.dir={tmp_path / 'runs'}",
            "output.name=minilm",
            "training.max_steps=12",
            "training.progress=false",
        ],
    )
    srv = ThreadServer(build_app(load_targets([f"sentiment={res.run_dir}"])))
    try:
        texts = ["The film was wonderful and I loved it.", "A dull, tedious mess."]
        body = srv.post("/v1/classify", {"model": "sentiment", "input": texts}, key=None).json()
        expected = tunelab.predict(res.run_dir, texts=texts)
        for d, e in zip(body["data"], expected):
            assert d["label"] == e["label"]
            assert d["probabilities"] == pytest.approx(e["probabilities"], abs=2e-6)
    finally:
        srv.close()


def test_serve_is_in_the_api():
    from tunelab import api
    from tunelab.workflows.serve import serve

    assert api.serve is serve
