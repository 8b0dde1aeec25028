"""Which view of the embedded MiniLM separates SST-2 best, before any fine-tuning?

    python benchmarks/probe_pooling.py

Logistic regression on frozen features of 3,000 seeded SST-2 training sentences, scored on the
872-row dev set, for three views of all-MiniLM-L6-v2: the CLS token, the mean of the tokens (the
pooling the checkpoint was trained with), and BERT's pooler output (what
``BertForSequenceClassification`` classifies). Skips when ``../shared/data`` is absent.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"


def main() -> None:
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent")
        return
    import torch
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel, AutoTokenizer

    from tunelab.models.registry import resolve_model

    r = resolve_model("minilm-l6")
    tok = AutoTokenizer.from_pretrained(r.path)
    model = AutoModel.from_pretrained(r.path).eval()

    def load(name: str) -> tuple[list[str], list[int]]:
        with open(DATA / name, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        return [x["sentence"] for x in rows], [int(x["label"]) for x in rows]

    tx, ty = load("train.tsv")
    idx = random.Random(0).sample(range(len(tx)), 3000)
    tx, ty = [tx[i] for i in idx], [ty[i] for i in idx]
    dx, dy = load("dev.tsv")

    def features(texts: list[str]):
        views: dict[str, list] = {"cls": [], "mean": [], "pooler": []}
        with torch.inference_mode():
            for i in range(0, len(texts), 64):
                enc = tok(
                    texts[i : i + 64],
                    padding=True,
                    truncation=True,
                    max_length=128,
                    return_tensors="pt",
                )
                out = model(**enc)
                h, m = out.last_hidden_state, enc["attention_mask"].unsqueeze(-1).float()
                views["cls"].append(h[:, 0])
                views["mean"].append((h * m).sum(1) / m.sum(1))
                views["pooler"].append(out.pooler_output)
        return {k: torch.cat(v).numpy() for k, v in views.items()}

    train, dev = features(tx), features(dx)
    for view in ("cls", "mean", "pooler"):
        clf = LogisticRegression(max_iter=2000).fit(train[view], ty)
        print(f"{view:7s} dev accuracy {clf.score(dev[view], dy):.4f}")


if __name__ == "__main__":
    main()
