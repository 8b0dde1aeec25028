"""Language-model batches: one right-padded row per example, or packed rows.

Packing lays several examples end to end in a row, each with positions from 0, so that no
token attends across examples (the model builds its mask from the restarting positions) and
little compute goes to padding."""

from __future__ import annotations

from typing import Any

#: the label of a position that is not scored
IGNORE = -100


def pack_rows(lengths: list[int], max_length: int) -> list[list[int]]:
    """Example indices grouped into rows of at most ``max_length`` tokens, first-fit decreasing.

    Rows, not one long row: attention costs the square of a row's length, so one row of a whole
    batch of long examples would cost more than padding them."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = lengths[i]
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(max_length - n)
    return rows


def packed_batch(features: list[dict[str, Any]], rows: list[list[int]], pad: int) -> dict:
    """Tensors of packed rows: ids, per-example positions, labels, and whose each token is."""
    import torch

    width = max(sum(len(features[i]["input_ids"]) for i in row) for row in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    example = torch.full((len(rows), width), -1, dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            f = features[i]
            n = len(f["input_ids"])
            ids[r, at : at + n] = torch.tensor(f["input_ids"])
            pos[r, at : at + n] = torch.arange(n)
            # the first token of an example is never predicted from the previous one
            labels[r, at + 1 : at + n] = torch.tensor(f["labels"][1:n])
            example[r, at : at + n] = i
            at += n
        # the row's padding restarts its positions: a sequence of its own that no
        # example attends to, with no labels
        pos[r, at:] = torch.arange(width - at)
    return {"input_ids": ids, "position_ids": pos, "labels": labels, "example": example}


def padded_batch(features: list[dict[str, Any]], pad: int) -> dict:
    """One right-padded row per example, with its attention mask and labels."""
    import torch

    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    lwidth = max(len(f["labels"]) for f in features)
    labels = torch.full((len(features), lwidth), IGNORE, dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n] = torch.tensor(f["input_ids"])
        mask[i, :n] = 1
        labels[i, : len(f["labels"])] = torch.tensor(f["labels"])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def shared_prompt_batch(features: list[dict[str, Any]], rows: list[list[int]], pad: int) -> dict:
    """Preference pairs with the prompt once: each feature's ``input_ids`` is prompt + chosen +
    rejected (``prompt_len``, ``chosen_len``), laid out as is; the rejected tokens take the
    positions that follow the prompt and attend to the prompt and to themselves, never to the
    chosen ones (a [rows, 1, width, width] boolean mask, True = attends, as SDPA reads it).

    Scoring is by index: ``src`` is the flat (row * width + position) index of the hidden
    state that predicts each response token, ``target`` that token, ``owner`` whose it is
    (pair i's chosen side is i, its rejected side B + i). A response's first token is
    predicted from the prompt's last, as in a row of its own."""
    import torch

    lengths = [len(f["input_ids"]) for f in features]
    width = max(sum(lengths[i] for i in row) for row in rows)
    b = len(features)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    seg = torch.full((len(rows), width), -1, dtype=torch.long)
    part = torch.zeros((len(rows), width), dtype=torch.long)  # 1 chosen, 2 rejected
    src: list[int] = []
    target: list[int] = []
    owner: list[int] = []
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            f = features[i]
            n, p, c = lengths[i], f["prompt_len"], f["chosen_len"]
            ids[r, at : at + n] = torch.tensor(f["input_ids"])
            pos[r, at : at + p + c] = torch.arange(p + c)
            pos[r, at + p + c : at + n] = torch.arange(p, n - c)
            seg[r, at : at + n] = i
            part[r, at + p : at + p + c] = 1
            part[r, at + p + c : at + n] = 2
            base = r * width + at
            skip = 1 if p == 0 else 0  # no prompt: a first token nothing predicts
            chosen_src = list(range(base + p - 1, base + p + c - 1))
            rejected_src = [base + p - 1, *range(base + p + c, base + n - 1)]
            for side, (first, last, srcs) in enumerate(
                ((p, p + c, chosen_src), (p + c, n, rejected_src))
            ):
                src.extend(srcs[skip:])
                target.extend(f["input_ids"][first + skip : last])
                owner.extend([side * b + i] * (last - first - skip))
            at += n
        pos[r, at:] = torch.arange(width - at)  # padding: a sequence of its own, unscored
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    same = seg[:, :, None] == seg[:, None, :]
    across = (part[:, :, None] == 2) & (part[:, None, :] == 1)
    mask = (same & causal & ~across).unsqueeze(1)
    return {
        "input_ids": ids,
        "position_ids": pos,
        "attention_mask": mask,
        "src": torch.tensor(src, dtype=torch.long),
        "target": torch.tensor(target, dtype=torch.long),
        "owner": torch.tensor(owner, dtype=torch.long),
        "n_sequences": torch.tensor(2 * b),
    }
