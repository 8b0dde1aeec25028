"""tunelab serve against `transformers serve`: OpenAI chat completions under load.

    flock /tmp/tunelab-bench.lock python benchmarks/bench_serve.py \
        [--requests 12,24,48] [--concurrency 1,4,16] [--max-tokens 32] [--time-limit 240]
        [--peer plain,cb] [--out FILE]

Both servers load the same local transformers folder (the embedded SmolLM2-135M-Instruct GGUF,
converted once by tunelab's model loading) on the CPU in fp32 (tunelab ``--precision fp32``,
the peer ``--dtype float32``), each in its own process, on a free
127.0.0.1 port. A bounded closed-loop load generator (C client threads, a fixed number of
requests per level, and a time limit per level after which no new request starts) sends the
same chat prompts with the same ``max_tokens``, greedy (``temperature: 0``), to each server in
turn: tunelab, then the peer variants (``plain``: transformers serve's default, one request at a
time; ``cb``: its ``--continuous-batching``). It reports requests/s, generated tokens/s (from
each response's ``usage.completion_tokens``), p50/p95/p99 latency, errors, and how many
answers are identical to tunelab's, then the ratios. Loopback only; nothing else is contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [
    "Write a haiku about the sea.",
    "Give three tips for learning to cook.",
    "Explain what a rainbow is to a child.",
    "Name five animals that live in the desert.",
    "What is the capital of France? Answer in one sentence.",
    "Describe a sunset in two sentences.",
    "Why do leaves change colour in autumn?",
    "Suggest a name for a friendly robot.",
    "List three uses of a paper clip.",
    "How do I boil an egg?",
    "Write a short thank-you note to a teacher.",
    "What is photosynthesis?",
    "Tell me a fun fact about octopuses.",
    "Give a tip for a good night's sleep.",
    "What makes a good friend?",
    "Summarize the plot of Cinderella in one sentence.",
]


def model_dir() -> str:
    from tunelab.models.loading import model_path
    from tunelab.models.registry import resolve_model

    return model_path(resolve_model("smollm2-135m-instruct"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} was not ready within {timeout:.0f} s")


def start_tunelab(folder: str, max_batch: int) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "tunelab.cli", "serve", f"smollm2={folder}"]
    cmd += ["--port", str(port), "--max-batch-size", str(max_batch), "--precision", "fp32"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}", "smollm2"


def start_peer(folder: str, cb: bool) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    cmd = ["transformers", "serve", folder, "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--device", "cpu", "--dtype", "float32", "--log-level", "error"]
    if cb:
        cmd.append("--continuous-batching")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return proc, f"http://127.0.0.1:{port}", folder


def stop(proc: subprocess.Popen) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def load(url: str, model: str, requests: int, conc: int, max_tokens: int, limit: float) -> dict:
    """``requests`` chat completions from ``conc`` threads; none starts after ``limit`` s."""
    lock, results = threading.Lock(), []
    counter = iter(range(requests))
    start = time.perf_counter()

    def worker():
        with httpx.Client(timeout=max(60.0, limit)) as client:
            while time.perf_counter() - start < limit:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                body = {
                    "model": model,
                    "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                    "max_tokens": max_tokens,
                    "temperature": 0,
                }
                t = time.perf_counter()
                try:
                    res = client.post(url + "/v1/chat/completions", json=body)
                    ok = res.status_code == 200
                    data = res.json() if ok else {}
                    tokens = data["usage"]["completion_tokens"] if ok else 0
                    text = data["choices"][0]["message"]["content"] if ok else None
                except (httpx.HTTPError, KeyError, ValueError):
                    ok, tokens, text = False, 0, None
                with lock:
                    results.append((i, time.perf_counter() - t, ok, tokens, text))

    with ThreadPoolExecutor(conc) as pool:
        for f in [pool.submit(worker) for _ in range(conc)]:
            f.result()
    wall = time.perf_counter() - start
    lat = sorted(r[1] for r in results if r[2])

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

    done = sum(1 for r in results if r[2])
    tokens = sum(r[3] for r in results)
    return {
        "requests": len(results),
        "errors": len(results) - done,
        "wall_s": wall,
        "req_per_s": done / wall,
        "tok_per_s": tokens / wall,
        "p50_s": pct(0.50),
        "p95_s": pct(0.95),
        "p99_s": pct(0.99),
        "mean_tokens": tokens / max(done, 1),
        "texts": {r[0] % len(PROMPTS): r[4] for r in results if r[2]},
    }


def batch_sizes(url: str) -> tuple[float, float] | None:
    """tunelab's (number of generation batches, rows in them) from /metrics; None elsewhere."""
    try:
        text = httpx.get(url + "/metrics", timeout=10).text
    except httpx.HTTPError:
        return None
    count = re.search(r'tunelab_batch_size_count\{kind="generation"\} (\S+)', text)
    total = re.search(r'tunelab_batch_size_sum\{kind="generation"\} (\S+)', text)
    return (float(count[1]), float(total[1])) if count and total else None


def run_server(name, start, folder, args) -> dict:
    proc, url, model = start()
    out: dict = {"name": name}
    try:
        wait_ready(url, proc, args.start_timeout)
        load(url, model, 2, 1, args.max_tokens, args.time_limit)  # warm-up, not counted
        for requests, conc in zip(args.requests, args.concurrency):
            before = batch_sizes(url)
            r = load(url, model, requests, conc, args.max_tokens, args.time_limit)
            after = batch_sizes(url)
            if before and after and after[0] > before[0]:
                r["mean_batch"] = (after[1] - before[1]) / (after[0] - before[0])
            out[conc] = r
            print(
                f"{name:>18} c={conc:<3} {r['requests']:>3} req  {r['errors']} err  "
                f"{r['req_per_s']:.3f} req/s  {r['tok_per_s']:.1f} tok/s  "
                f"p50 {r['p50_s']:.2f}s  p95 {r['p95_s']:.2f}s  p99 {r['p99_s']:.2f}s"
                + (f"  mean batch {r['mean_batch']:.1f}" if "mean_batch" in r else ""),
                flush=True,
            )
    except RuntimeError as e:
        out["failed"] = str(e)
        print(f"{name}: {e}", flush=True)
    finally:
        out["exit_code"] = stop(proc)
    return out


def table(results: list[dict], args) -> str:
    head = (
        "| server | concurrency | requests | errors | req/s | gen tok/s | p50 s | p95 s | p99 s |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        for c in args.concurrency:
            r = res.get(c)
            if r is None:
                lines.append(
                    f"| {res['name']} | {c} | - | - | {res.get('failed', 'not run')} |||||"
                )
                continue
            lines.append(
                f"| {res['name']} | {c} | {r['requests']} | {r['errors']} | {r['req_per_s']:.3f} "
                f"| {r['tok_per_s']:.1f} | {r['p50_s']:.2f} | {r['p95_s']:.2f} | {r['p99_s']:.2f} |"
            )
    return "\n".join(lines)


def ratios(results: list[dict], args) -> list[str]:
    ours, out = results[0], []
    lo, hi = args.concurrency[0], args.concurrency[-1]
    if lo in ours and hi in ours:
        scale = ours[hi]["tok_per_s"] / ours[lo]["tok_per_s"]
        out.append(f"tunelab tok/s at c={hi} / at c={lo}: {scale:.2f}x (target >= 3)")
    for peer in results[1:]:
        for c in args.concurrency:
            if c in ours and c in peer:
                same = sum(
                    1
                    for k, t in ours[c]["texts"].items()
                    if peer[c]["texts"].get(k) is not None and peer[c]["texts"][k].strip() == t
                )
                out.append(
                    f"tunelab / {peer['name']} at c={c}: req/s "
                    f"{ours[c]['req_per_s'] / max(peer[c]['req_per_s'], 1e-9):.2f}x, tok/s "
                    f"{ours[c]['tok_per_s'] / max(peer[c]['tok_per_s'], 1e-9):.2f}x; "
                    f"identical answers {same}/{len(ours[c]['texts'])}"
                )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", default="12,24,48", help="requests per level")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--time-limit", type=float, default=240.0, help="seconds per level")
    ap.add_argument("--start-timeout", type=float, default=300.0)
    ap.add_argument("--peer", default="plain,cb", help="transformers serve variants: plain, cb")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve.json"))
    args = ap.parse_args()
    args.requests = [int(x) for x in args.requests.split(",")]
    args.concurrency = [int(x) for x in args.concurrency.split(",")]
    if len(args.requests) != len(args.concurrency):
        ap.error("--requests needs one count per --concurrency level")
    folder = model_dir()
    print(f"model folder: {folder}\nmax_tokens {args.max_tokens}, greedy; {os.cpu_count()} CPUs")
    most = max(args.concurrency)
    servers = [("tunelab serve", lambda: start_tunelab(folder, most))]
    peers = {"plain": False, "cb": True}
    for p in [p for p in args.peer.split(",") if p]:
        servers.append((f"transformers {p}", lambda cb=peers[p]: start_peer(folder, cb)))
    results = [run_server(name, start, folder, args) for name, start in servers]
    print("\n" + table(results, args) + "\n")
    for line in ratios(results, args):
        print(line)
    errors = sum(r[c]["errors"] for r in results[:1] for c in args.concurrency if c in r)
    print(f"tunelab errors: {errors}; tunelab exit code after SIGTERM: {results[0]['exit_code']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
