"""Input perturbations for robustness evaluation (applied to inputs, never to references).

Each perturbation takes a text, a strength in [0, 1] and a ``random.Random``; the same seed gives
the same noisy text. ``mild_mix`` follows HELM's "mild mix" idea: a little of several kinds of
noise at once (typos, casing, contractions, whitespace). Written for tunelab.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from tunelab.errors import ConfigError

KEYBOARD = [
    "1234567890-",
    "qwertyuiop[",
    "asdfghjkl;'",
    "zxcvbnm,./",
]


def _neighbours() -> dict[str, str]:
    pos = {c: (r, i) for r, row in enumerate(KEYBOARD) for i, c in enumerate(row)}
    out = {}
    for c, (r, i) in pos.items():
        near = []
        for dr, di in ((0, -1), (0, 1), (-1, 0), (-1, 1), (1, -1), (1, 0)):
            rr, ii = r + dr, i + di
            inside = 0 <= rr < len(KEYBOARD) and 0 <= ii < len(KEYBOARD[rr])
            if inside and KEYBOARD[rr][ii].isalpha():
                near.append(KEYBOARD[rr][ii])
        if c.isalpha():
            out[c] = "".join(near)
    return out


NEIGHBOURS = _neighbours()

CONTRACTIONS = {
    "do not": "don't",
    "does not": "doesn't",
    "did not": "didn't",
    "is not": "isn't",
    "are not": "aren't",
    "was not": "wasn't",
    "were not": "weren't",
    "can not": "can't",
    "cannot": "can't",
    "will not": "won't",
    "would not": "wouldn't",
    "could not": "couldn't",
    "should not": "shouldn't",
    "have not": "haven't",
    "has not": "hasn't",
    "it is": "it's",
    "that is": "that's",
    "there is": "there's",
    "i am": "i'm",
    "you are": "you're",
    "they are": "they're",
    "we are": "we're",
    "i have": "i've",
    "i will": "i'll",
    "let us": "let's",
}
EXPANSIONS = {v: k for k, v in CONTRACTIONS.items() if k != "can not"}


def _keep_case(src: str, new: str) -> str:
    if src.isupper() and len(src) > 1:
        return new.upper()
    if src[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


def typos(text: str, strength: float, rng: random.Random) -> str:
    """Keyboard-neighbour substitutions, dropped and repeated letters, each letter with
    probability ``strength``."""
    out = []
    for c in text:
        if c.isalpha() and rng.random() < strength:
            kind = rng.randrange(3)
            low = c.lower()
            if kind == 0 and NEIGHBOURS.get(low):
                r = rng.choice(NEIGHBOURS[low])
                out.append(r.upper() if c.isupper() else r)
            elif kind == 1:
                continue  # dropped
            else:
                out.append(c + c)
        else:
            out.append(c)
    return "".join(out)


def casing(text: str, strength: float, rng: random.Random) -> str:
    """Words lower-, upper- or title-cased, each with probability ``strength``."""

    def one(m: re.Match) -> str:
        w = m.group(0)
        if rng.random() >= strength:
            return w
        return rng.choice((w.lower(), w.upper(), w.title()))

    return re.sub(r"[A-Za-z]+", one, text)


def _swap_phrases(text: str, table: dict[str, str], strength: float, rng: random.Random) -> str:
    keys = sorted(table, key=len, reverse=True)
    pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in keys) + r")\b", re.IGNORECASE)

    def one(m: re.Match) -> str:
        src = m.group(0)
        if rng.random() >= strength:
            return src
        return _keep_case(src, table[src.lower()])

    return pattern.sub(one, text)


def contract(text: str, strength: float, rng: random.Random) -> str:
    """ "do not" -> "don't" and the like, each occurrence with probability ``strength``."""
    return _swap_phrases(text, CONTRACTIONS, strength, rng)


def expand(text: str, strength: float, rng: random.Random) -> str:
    """ "don't" -> "do not" and the like."""
    return _swap_phrases(text, EXPANSIONS, strength, rng)


def whitespace(text: str, strength: float, rng: random.Random) -> str:
    """Extra spaces, tabs and newlines between words."""
    parts = text.split(" ")
    out = []
    for i, p in enumerate(parts):
        out.append(p)
        if i < len(parts) - 1:
            sep = " "
            if rng.random() < strength:
                sep = rng.choice(("  ", "   ", " \t", "\n", " \n "))
            out.append(sep)
    return "".join(out)


def punctuation(text: str, strength: float, rng: random.Random) -> str:
    """Punctuation dropped, doubled or inserted after words."""
    out = []
    for tok in re.findall(r"\S+|\s+", text):
        if tok.strip() and rng.random() < strength:
            kind = rng.randrange(3)
            if kind == 0:
                tok = tok.rstrip(".,!?;:") or tok
            elif kind == 1 and tok[-1] in ".,!?":
                tok = tok + tok[-1]
            else:
                tok = tok + rng.choice((",", "!", "...", ";"))
        out.append(tok)
    return "".join(out)


def word_noise(text: str, strength: float, rng: random.Random) -> str:
    """Words dropped, repeated, or swapped with their neighbour."""
    words = text.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if rng.random() < strength:
            kind = rng.randrange(3)
            if kind == 0 and len(words) > 1:
                i += 1
                continue
            if kind == 1:
                out += [w, w]
                i += 1
                continue
            if kind == 2 and i + 1 < len(words):
                out += [words[i + 1], w]
                i += 2
                continue
        out.append(w)
        i += 1
    return " ".join(out)


def mild_mix(text: str, strength: float, rng: random.Random) -> str:
    """HELM-style mild mix: a little of several noises at once (``strength`` scales them)."""
    text = contract(text, min(1.0, 5 * strength), rng)
    text = typos(text, strength, rng)
    text = casing(text, strength, rng)
    return whitespace(text, strength, rng)


PERTURBATIONS: dict[str, Callable[[str, float, random.Random], str]] = {
    "typos": typos,
    "casing": casing,
    "contract": contract,
    "expand": expand,
    "whitespace": whitespace,
    "punctuation": punctuation,
    "word_noise": word_noise,
    "mild_mix": mild_mix,
}


def check_perturbations(names: list[str], key: str) -> None:
    """The one check of perturbation names (config, suites and :func:`perturb` use it)."""
    bad = [k for k in names if k not in PERTURBATIONS]
    if bad:
        where = f"{key} " if key else ""
        raise ConfigError(
            f"{where}{bad}: unknown perturbation; allowed: {', '.join(PERTURBATIONS)}"
        )


def perturb(texts: list[str], kind: str, strength: float = 0.1, seed: int = 0) -> list[str]:
    """``texts`` with perturbation ``kind`` at ``strength``; text i uses its own seeded
    generator, so the noise of a text does not depend on the others."""
    check_perturbations([kind], "perturbation")
    if not 0.0 <= strength <= 1.0:
        raise ConfigError(f"perturbation strength {strength} must lie in [0, 1]")
    fn = PERTURBATIONS[kind]
    return [fn(t, strength, random.Random(f"{seed}:{kind}:{i}")) for i, t in enumerate(texts)]
