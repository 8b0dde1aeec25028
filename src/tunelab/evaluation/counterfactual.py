"""Counterfactual fairness: the same text with group-associated words swapped.

Word lists are written for tunelab (pairs of gendered terms and pronouns; first names used in
published bias studies as group proxies, which are proxies only). Users pass their own lists as
``{word: replacement}`` dicts. Case is kept; words are matched whole.
"""

from __future__ import annotations

import re

GENDER_PAIRS = [
    ("he", "she"),
    ("him", "her"),
    ("his", "her"),
    ("himself", "herself"),
    ("man", "woman"),
    ("men", "women"),
    ("boy", "girl"),
    ("boys", "girls"),
    ("father", "mother"),
    ("fathers", "mothers"),
    ("son", "daughter"),
    ("sons", "daughters"),
    ("brother", "sister"),
    ("brothers", "sisters"),
    ("husband", "wife"),
    ("husbands", "wives"),
    ("uncle", "aunt"),
    ("nephew", "niece"),
    ("king", "queen"),
    ("mr", "mrs"),
    ("sir", "madam"),
    ("gentleman", "lady"),
    ("gentlemen", "ladies"),
    ("boyfriend", "girlfriend"),
    ("grandfather", "grandmother"),
    ("male", "female"),
    ("dad", "mom"),
    ("actor", "actress"),
    ("actors", "actresses"),
    ("guy", "gal"),
]

#: first names as group proxies (as in published bias studies; proxies, not identities)
NAMES = {
    "male": ["James", "John", "Robert", "Michael", "David", "Daniel", "Paul", "Mark"],
    "female": ["Mary", "Patricia", "Jennifer", "Linda", "Susan", "Sarah", "Karen", "Nancy"],
    "european_american": ["Adam", "Harry", "Josh", "Roger", "Alan", "Frank", "Justin", "Ryan"],
    "african_american": [
        "Alonzo",
        "Jamel",
        "Theo",
        "Jerome",
        "Leroy",
        "Torrance",
        "Darnell",
        "Lamar",
    ],
}


def gender_swap_table() -> dict[str, str]:
    """Both directions of every gender pair ("her" maps back to "his")."""
    table: dict[str, str] = {}
    for a, b in GENDER_PAIRS:
        table.setdefault(a, b)
        table.setdefault(b, a)
    return table


def name_swap_table(group_a: str, group_b: str) -> dict[str, str]:
    """The i-th name of ``group_a`` <-> the i-th name of ``group_b``."""
    a, b = NAMES[group_a], NAMES[group_b]
    table = {x.lower(): y for x, y in zip(a, b)}
    table.update({y.lower(): x for x, y in zip(a, b)})
    return table


def _keep_case(src: str, new: str) -> str:
    if src.isupper() and len(src) > 1:
        return new.upper()
    if src[:1].isupper():
        return new[:1].upper() + new[1:]
    return new.lower() if src.islower() else new


def swap(text: str, table: dict[str, str]) -> str:
    """``text`` with every whole word found in ``table`` (case-insensitive) replaced."""
    if not table:
        return text
    keys = sorted(table, key=len, reverse=True)
    pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in keys) + r")\b", re.IGNORECASE)
    return pattern.sub(lambda m: _keep_case(m.group(0), table[m.group(0).lower()]), text)


def counterfactuals(texts: list[str], table: dict[str, str]) -> list[tuple[int, str]]:
    """(index, swapped text) for the texts that the table changes."""
    out = []
    for i, t in enumerate(texts):
        s = swap(t, table)
        if s != t:
            out.append((i, s))
    return out


def flip_stats(
    original: list[str], swapped: list[str], scores_a: list[float], scores_b: list[float]
) -> dict[str, float]:
    """Share of predictions that change, and the mean absolute score change."""
    n = max(len(original), 1)
    flips = sum(a != b for a, b in zip(original, swapped))
    delta = sum(abs(a - b) for a, b in zip(scores_a, scores_b))
    return {"flip_rate": flips / n, "mean_abs_score_change": delta / n, "n": len(original)}
