"""Helpers for tests: tiny datasets and configs."""

from __future__ import annotations

import csv
import random
import threading
import time
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

FILLER = [
    "the",
    "a",
    "this",
    "that",
    "movie",
    "film",
    "plot",
    "story",
    "acting",
    "music",
    "scene",
    "cast",
    "it",
    "was",
    "is",
    "felt",
    "seemed",
    "quite",
    "very",
    "rather",
    "really",
    "somewhat",
    "and",
    "but",
    "with",
    "of",
    "to",
    "in",
    "for",
    "on",
]
POSITIVE = ["good", "great", "wonderful", "superb", "lovely", "fun", "brilliant"]
NEGATIVE = ["bad", "awful", "boring", "terrible", "dull", "weak", "poor"]
NEUTRAL = ["okay", "average", "plain"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def keyword_rows(n: int, seed: int, labels=("negative", "positive")) -> list[dict]:
    """Rows whose label is decided by one sentiment word among filler (easy to learn)."""
    rng = random.Random(seed)
    words = {"negative": NEGATIVE, "positive": POSITIVE, "neutral": NEUTRAL}
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        toks = [rng.choice(FILLER) for _ in range(rng.randint(3, 10))]
        toks.insert(rng.randrange(len(toks) + 1), rng.choice(words[label]))
        rows.append({"text": " ".join(toks), "label": label})
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=delimiter)
        w.writeheader()
        w.writerows(rows)
    return path


def keyword_files(folder: Path, n_train: int = 160, n_validation: int = 48) -> dict[str, Path]:
    """Train and validation CSVs of :func:`keyword_rows` in ``folder``."""
    return {
        "train": write_csv(folder / "train.csv", keyword_rows(n_train, 1)),
        "validation": write_csv(folder / "validation.csv", keyword_rows(n_validation, 2)),
    }


def tiny_config(model: Path, data: dict[str, Path], out: Path, **over) -> dict:
    """A fast training config for the tiny models."""
    cfg = {
        "model": {"name": str(model), "max_length": 32},
        "data": {
            "train": str(data["train"]),
            "validation": str(data.get("validation") or "") or None,
        },
        "method": "full",
        "training": {
            "max_steps": 80,
            "batch_size": 16,
            "lr": 5e-3,
            "warmup_ratio": 0.0,
            "eval_every": 40,
            "progress": False,
            "seed": 0,
            "precision": "fp32",
        },
        "output": {"dir": str(out), "name": "run"},
    }
    for key, value in over.items():
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return cfg


def plain_probs(model, tokenizer, texts: list[str]) -> list[list[float]]:
    """Class probabilities from a model loaded with plain transformers / peft."""
    import torch

    with torch.no_grad():
        enc = tokenizer(texts, return_tensors="pt", padding=True)
        return model.eval()(**enc).logits.softmax(-1).tolist()


def gen_rows(n: int, seed: int) -> list[dict]:
    """prompt/completion rows: a review with a positive word is answered "good fun", one with
    a negative word "bad dull" (learnable by a tiny model in a few dozen steps)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        pos = rng.random() < 0.5
        words = [*rng.sample(FILLER, 4), rng.choice(POSITIVE if pos else NEGATIVE)]
        rng.shuffle(words)
        rows.append({"prompt": " ".join(words), "completion": "good fun" if pos else "bad dull"})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


#: the API key of the test servers
KEY = "test-key-123"


class ThreadServer:
    """``build_app(...)`` served by uvicorn in a thread on a free loopback port."""

    def __init__(self, app, timeout: float = 30.0):
        import uvicorn

        from tunelab.workflows.serve.server import bind

        sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]})
        self.thread.start()
        end = time.monotonic() + timeout
        while not self.server.started:
            assert time.monotonic() < end and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)

    def client(self, key: str | None = KEY):
        import openai

        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key or "none", max_retries=0)

    def post(self, path: str, body=None, key: str | None = KEY, **kw):
        import httpx

        headers = {"Authorization": f"Bearer {key}"} if key else {}
        headers.update(kw.pop("headers", {}))
        if not isinstance(body, (dict, list)):  # raw bytes, or a generator of chunks
            headers.setdefault("content-type", "application/json")
            return httpx.post(self.url + path, content=body, headers=headers, timeout=60, **kw)
        return httpx.post(self.url + path, json=body, headers=headers, timeout=60, **kw)

    def get(self, path: str, key: str | None = KEY):
        import httpx

        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.get(self.url + path, headers=headers, timeout=30)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive()
