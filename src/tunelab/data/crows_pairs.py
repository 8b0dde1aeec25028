"""CrowS-Pairs (Nangia et al., 2020) as preference pairs, and the seeded halves of a table.

Which sentence is preferred: ``sent_less``, in every row. The data set's README defines
``sent_more`` as "the sentence which is more stereotypical" and ``sent_less`` as the less
stereotypical one, whatever ``stereo_antistereo`` says (that column tells whether ``sent_more``
demonstrates a stereotype of a disadvantaged group, ``stereo``, or ``sent_less`` violates one,
``antistereo``: in both, ``sent_more`` is the stereotypical sentence, e.g. "his"/"her" after "a
doctor"). The paper's metric and lm-evaluation-harness's ``pct_stereotype`` both count a pair
as biased when the model prefers ``sent_more``, so pairs that prefer ``sent_less`` train
against exactly what the suite measures.
"""

from __future__ import annotations

from typing import Any, Literal

from tunelab.errors import DataError

Half = Literal["train", "test"]
HALVES = ("train", "test")


def seeded_half(n: int, half: Half, seed: int = 0) -> list[int]:
    """Positions of one half of ``n`` rows, in order: a seeded permutation's first ``n // 2``
    are ``train``, the rest ``test`` (the two never overlap and together cover every row)."""
    import numpy as np

    if half not in HALVES:
        raise DataError(f"half must be one of {', '.join(HALVES)}, not {half!r}")
    perm = np.random.default_rng([seed, 19]).permutation(n)
    cut = n // 2
    return sorted(int(i) for i in (perm[:cut] if half == "train" else perm[cut:]))


def split_common_prefix(a: str, b: str) -> tuple[str, str, str]:
    """(shared prefix, rest of ``a``, rest of ``b``), cut at the last space the two texts share
    before they differ, so no word is split; ("", a, b) when they share no whole word."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    cut = a.rfind(" ", 0, n)  # before n, both texts hold this space at this place
    if cut <= 0:
        return "", a.strip(), b.strip()
    return a[:cut].rstrip(), a[cut:].strip(), b[cut:].strip()


def preference_rows(
    rows: list[dict[str, Any]], row_ids: list[int], prompt: Literal["shared", "empty"] = "shared"
) -> list[dict[str, Any]]:
    """``{prompt, chosen, rejected}`` per CrowS-Pairs row: ``sent_less`` chosen, ``sent_more``
    rejected; ``prompt="shared"`` moves the words the two sentences start with into the
    prompt, ``empty`` keeps whole sentences. ``bias_type``, ``stereo_antistereo`` and the source
    ``row`` are kept beside them."""
    out = []
    for row, rid in zip(rows, row_ids):
        more, less = row.get("sent_more"), row.get("sent_less")
        if not isinstance(more, str) or not isinstance(less, str):
            raise DataError(f"row {rid}: CrowS-Pairs rows need sent_more and sent_less texts")
        more, less = more.strip(), less.strip()
        if not more or not less or more == less:
            raise DataError(f"row {rid}: sent_more and sent_less must be two different texts")
        if prompt == "shared":
            head, chosen, rejected = split_common_prefix(less, more)
        else:
            head, chosen, rejected = "", less, more
        if not chosen or not rejected:  # one sentence is the other's prefix: keep them whole
            head, chosen, rejected = "", less, more
        out.append(
            {
                "prompt": head,
                "chosen": chosen,
                "rejected": rejected,
                "bias_type": row.get("bias_type"),
                "stereo_antistereo": row.get("stereo_antistereo"),
                "row": rid,
            }
        )
    return out
