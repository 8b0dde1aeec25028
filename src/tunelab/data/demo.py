"""Synthetic binary sentiment data for ``tunelab demo``.

Every sentence is assembled from vocabulary lists and templates written by
tunelab's authors for this module; nothing is downloaded and no public
dataset text is copied. Rows mix plain opinions, negated opinions ("not bad
at all", "hardly worth it") and two-clause contrasts whose label follows the
final clause, so the task is easy to learn but not solved by one keyword.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pathlib
import random
from dataclasses import dataclass, field
from importlib import resources

from tunelab.utils.io import atomic_write_text

__all__ = ["LABELS", "make_demo_rows", "write_demo_dataset"]

LABELS: tuple[str, str] = ("negative", "positive")

# The vocabulary (word lists, phrase templates and per-domain tables) lives in
# demo_vocab.json next to this module and is read once, at import.
_VOCAB: dict = json.loads(
    resources.files("tunelab.data").joinpath("demo_vocab.json").read_text(encoding="utf-8")
)

# Adjectives that fit any subject or aspect in any domain, by label.
_GENERAL: dict[str, list[str]] = _VOCAB["general"]

# Adverbs that intensify without carrying sentiment themselves.
_INTENSIFIERS: list[str] = _VOCAB["intensifiers"]

# Verbs of liking or disliking, used as "I {verb} {subject}", by label.
_FEELINGS: dict[str, list[str]] = _VOCAB["feelings"]

# Sentiment-neutral sentence openers.
_OPENERS: list[str] = _VOCAB["openers"]

# Short follow-up sentences that restate the sentiment, by label.
_REACTIONS: dict[str, list[str]] = _VOCAB["reactions"]

# Optional label-specific sentence endings (used sparingly), by label.
_CLOSERS: dict[str, list[str]] = _VOCAB["closers"]

# Noun phrases that take "were" rather than "was".
_PLURALS: frozenset[str] = frozenset(_VOCAB["plurals"])

# People, who are never referred to as "it".
_PEOPLE: frozenset[str] = frozenset(_VOCAB["people"])

# Each domain: whole-item subjects with their adjectives, aspects with
# aspect-specific (positive, negative) adjectives, and verb phrases.
# "{be}" in a verb phrase is replaced by "was"/"were" to agree with the subject.
# JSON has no tuples, so each aspect's [positive, negative] pair is rebuilt here.
_DOMAINS: dict[str, dict] = {
    name: {
        **domain,
        "aspects": {aspect: tuple(pair) for aspect, pair in domain["aspects"].items()},
    }
    for name, domain in _VOCAB["domains"].items()
}

# Fixed negated phrases; the label is the sentiment after negation.
_NEGATED_PHRASES: dict[str, list[str]] = _VOCAB["negated_phrases"]

# Share of each sentence family; the rest are plain opinions.
_P_NEGATION = 0.1
_P_CONTRAST = 0.1
_P_CLOSER = 0.15
_P_FOLLOW_UP = 0.5  # negated/contrast rows that restate their sentiment
_MAX_ATTEMPTS = 10_000


def _be(noun_phrase: str) -> str:
    return "were" if noun_phrase in _PLURALS else "was"


def _pronoun(noun_phrase: str) -> str:
    return "they" if noun_phrase in _PLURALS else "it"


def _pronoun_obj(noun_phrase: str) -> str:
    return "them" if noun_phrase in _PLURALS else "it"


def _other(label: str) -> str:
    return "negative" if label == "positive" else "positive"


def _finish(text: str) -> str:
    text = " ".join(text.split())
    return text[0].upper() + text[1:]


@dataclass
class _Generator:
    """Draws labelled sentences from one ``random.Random``, never repeating one."""

    rng: random.Random
    seen: set[str] = field(default_factory=set)

    def _intens(self) -> str:
        return self.rng.choice(_INTENSIFIERS) + " " if self.rng.random() < 0.35 else ""

    def _subject_adj(self, domain: dict, label: str) -> str:
        pool = domain[label] if self.rng.random() < 0.4 else _GENERAL[label]
        return self.rng.choice(pool)

    def _aspect(self, domain: dict, exclude: str = "") -> str:
        return self.rng.choice([a for a in domain["aspects"] if a != exclude])

    def _aspect_adj(self, domain: dict, aspect: str, label: str) -> str:
        pos, neg = domain["aspects"][aspect]
        if self.rng.random() < 0.5:
            return self.rng.choice(_GENERAL[label])
        return self.rng.choice(pos if label == "positive" else neg)

    def _plain(self, domain: dict, label: str) -> str:
        rng = self.rng
        subj = rng.choice(domain["subjects"])
        aspect = self._aspect(domain)
        topic, used = subj, ""  # what a follow-up pronoun refers to; adjective used
        kind = rng.randrange(6)
        if kind == 0:
            opener = rng.choice(_OPENERS) + " " if rng.random() < 0.4 else ""
            used = self._subject_adj(domain, label)
            core = f"{opener}{subj} {_be(subj)} {self._intens()}{used}"
        elif kind == 1:
            opener = rng.choice(_OPENERS) + " " if rng.random() < 0.4 else ""
            topic, used = aspect, self._aspect_adj(domain, aspect, label)
            core = f"{opener}{aspect} {_be(aspect)} {self._intens()}{used}"
        elif kind == 2:
            verb = rng.choice(domain["verbs"][label]).format(be=_be(subj))
            core = f"{subj} {verb}"
        elif kind == 3:
            core = f"I {rng.choice(_FEELINGS[label])} {subj}"
        elif kind == 4:
            used = self._subject_adj(domain, label)
            core = f"I found {subj} {self._intens()}{used}"
        else:
            a1 = self._subject_adj(domain, label)
            a2 = self._subject_adj(domain, label)
            core = f"{subj} {_be(subj)} {a1} and {a2}" if a1 != a2 else f"{subj} {_be(subj)} {a1}"
            used = a2
        # Most plain sentences carry a second cue with the same sentiment.
        extra = rng.randrange(5)
        if extra >= 3 and (topic in _PEOPLE or (extra == 4 and kind == 3)):
            extra = 2  # no "it" for people, no "I loved X, and I enjoyed it"
        if extra == 0:
            return f"{core}."
        if extra == 1:
            aspect2 = self._aspect(domain, exclude=aspect)
            adj2 = self._aspect_adj(domain, aspect2, label)
            return f"{core}, and {aspect2} {_be(aspect2)} {self._intens()}{adj2}."
        if extra == 2:
            return f"{core}. {rng.choice(_REACTIONS[label])}"
        if extra == 3:
            for _ in range(5):
                if topic == subj:
                    adj = self._subject_adj(domain, label)
                else:
                    adj = self._aspect_adj(domain, topic, label)
                if adj != used:
                    return f"{core}; {_pronoun(topic)} {_be(topic)} {adj}."
            return f"{core}."
        return f"{core}, and I {rng.choice(_FEELINGS[label])} {_pronoun_obj(topic)}."

    def _negated(self, domain: dict, label: str) -> str:
        rng = self.rng
        subj = rng.choice(domain["subjects"])
        flipped = _other(label)  # the adjective's own polarity before negation
        kind = rng.randrange(6)
        if kind == 0:
            return rng.choice(_NEGATED_PHRASES[label]).format(subj=subj, be=_be(subj))
        if kind == 1:
            adj = self._subject_adj(domain, flipped)
            tail = " at all" if rng.random() < 0.5 else ""
            return f"{subj} {_be(subj)} not {adj}{tail}."
        if kind == 2:
            adj = self._subject_adj(domain, flipped)
            word = rng.choice(["far from", "never", "hardly", "anything but"])
            return f"{subj} {_be(subj)} {word} {adj}."
        if kind == 3:
            aspect = self._aspect(domain)
            adj = self._aspect_adj(domain, aspect, flipped)
            tail = " at all" if rng.random() < 0.5 else ""
            return f"{aspect} {_be(aspect)} not {adj}{tail}."
        if kind == 4:
            adj = self._subject_adj(domain, flipped)
            return f"nothing about {subj} {_be(subj)} {adj}."
        aspect = self._aspect(domain)
        adj = self._aspect_adj(domain, aspect, flipped)
        return f"I would not call {aspect} {adj}."

    def _contrast(self, domain: dict, label: str) -> str:
        rng = self.rng
        subj = rng.choice(domain["subjects"])
        first = _other(label)
        aspect1 = self._aspect(domain)
        aspect2 = self._aspect(domain, exclude=aspect1)
        b1, b2 = _be(aspect1), _be(aspect2)
        o1 = self._aspect_adj(domain, aspect1, first)
        l2 = self._aspect_adj(domain, aspect2, label)
        kind = rng.randrange(6)
        if kind == 0:
            joiner = rng.choice(["but", "yet", "but honestly", "but luckily", "but sadly"])
            if (joiner == "but luckily" and label == "negative") or (
                joiner == "but sadly" and label == "positive"
            ):
                joiner = "but"
            return f"{aspect1} {b1} {o1}, {joiner} {aspect2} {b2} {l2}."
        if kind == 1:
            return f"although {aspect1} {b1} {o1}, {aspect2} {b2} {l2}."
        if kind == 2:
            return f"{aspect1} {b1} {o1}; however, {aspect2} {b2} {l2}."
        so = self._subject_adj(domain, first)
        sl = self._subject_adj(domain, label)
        if kind == 3:
            return f"{subj} {_be(subj)} {so} at first, but {_pronoun(subj)} turned out {sl}."
        if kind == 4:
            return f"I expected {subj} to be {so}, but {_pronoun(subj)} {_be(subj)} {sl}."
        return f"some people said {subj} {_be(subj)} {so}, but I found {_pronoun(subj)} {sl}."

    def sentence(self, label: str) -> str:
        """Return one new sentence with the given label."""
        rng = self.rng
        for _ in range(_MAX_ATTEMPTS):
            domain = _DOMAINS[rng.choice(sorted(_DOMAINS))]
            roll = rng.random()
            if roll < _P_NEGATION + _P_CONTRAST:
                if roll < _P_NEGATION:
                    text = self._negated(domain, label)
                else:
                    text = self._contrast(domain, label)
                if rng.random() < _P_FOLLOW_UP:
                    text = f"{text} {rng.choice(_REACTIONS[label])}"
            else:
                text = self._plain(domain, label)
            text = _finish(text)
            if rng.random() < _P_CLOSER:
                text = f"{text} {rng.choice(_CLOSERS[label])}"
            key = text.lower()
            if key not in self.seen:
                self.seen.add(key)
                return text
        raise RuntimeError("could not generate a new distinct sentence")

    def rows(self, n: int) -> list[dict]:
        """Return ``n`` new rows whose label counts differ by at most one."""
        labels = ["positive"] * (n - n // 2) + ["negative"] * (n // 2)
        self.rng.shuffle(labels)
        return [{"text": self.sentence(label), "label": label} for label in labels]


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


def make_demo_rows(n: int, seed: int) -> list[dict]:
    """Return ``n`` distinct, label-balanced ``{"text", "label"}`` rows.

    Labels are ``"negative"`` or ``"positive"``; the output depends only on
    ``n`` and ``seed``.
    """
    _check_count("n", n)
    return _Generator(random.Random(seed)).rows(n)


def _write_csv_atomic(path: pathlib.Path, rows: list[dict]) -> None:
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=["text", "label"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def write_demo_dataset(
    directory: str | os.PathLike,
    n_train: int = 800,
    n_validation: int = 200,
    n_test: int = 200,
    seed: int = 0,
) -> dict[str, pathlib.Path]:
    """Write ``train.csv``, ``validation.csv`` and ``test.csv`` into ``directory``.

    Each split is label-balanced and no sentence appears in two splits. The
    training rows equal ``make_demo_rows(n_train, seed)``. Files are written
    atomically (temporary file plus ``os.replace``). Returns the split paths.
    """
    sizes = {"train": n_train, "validation": n_validation, "test": n_test}
    for name, size in sizes.items():
        _check_count(f"n_{name}", size)
    out_dir = pathlib.Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    generator = _Generator(random.Random(seed))
    paths: dict[str, pathlib.Path] = {}
    for name, size in sizes.items():
        path = out_dir / f"{name}.csv"
        _write_csv_atomic(path, generator.rows(size))
        paths[name] = path
    return paths
