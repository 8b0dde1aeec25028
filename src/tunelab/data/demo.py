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
import os
import pathlib
import random
from dataclasses import dataclass, field

from tunelab.utils.io import atomic_write_text

__all__ = ["LABELS", "make_demo_rows", "write_demo_dataset"]

LABELS: tuple[str, str] = ("negative", "positive")

# Adjectives that fit any subject or aspect in any domain.
_GENERAL = {
    "positive": [
        "great", "excellent", "wonderful", "fantastic", "superb", "impressive",
        "lovely", "brilliant", "outstanding", "terrific", "first-rate",
        "amazing", "fabulous", "stellar", "delightful", "marvelous",
    ],
    "negative": [
        "awful", "terrible", "dreadful", "disappointing", "poor", "mediocre",
        "horrible", "lousy", "unpleasant", "abysmal", "atrocious", "subpar",
        "underwhelming", "lackluster", "frustrating", "miserable",
    ],
}  # fmt: skip

# Adverbs that intensify without carrying sentiment themselves.
_INTENSIFIERS = [
    "really", "very", "truly", "incredibly", "remarkably", "quite",
    "genuinely", "extremely", "surprisingly", "rather", "pretty", "so",
    "thoroughly", "downright", "utterly", "fairly",
]  # fmt: skip

# Verbs of liking or disliking, used as "I {verb} {subject}".
_FEELINGS = {
    "positive": [
        "loved", "enjoyed", "adored", "really liked", "was impressed by",
        "was delighted with", "was thrilled with", "fell in love with",
        "was pleasantly surprised by", "cannot stop praising",
    ],
    "negative": [
        "hated", "disliked", "regretted choosing", "was disappointed by",
        "was let down by", "was annoyed by", "could not stand",
        "was fed up with", "was appalled by", "cannot stop complaining about",
    ],
}  # fmt: skip

# Sentiment-neutral sentence openers.
_OPENERS = [
    "honestly,", "overall,", "in my opinion,", "frankly,", "to be honest,",
    "all in all,", "I have to say", "if you ask me,", "on balance,",
    "in the end,", "from my experience,", "I think", "to my mind,",
    "in short,", "all things considered,", "my friend agreed that",
]  # fmt: skip

# Short follow-up sentences that restate the sentiment.
_REACTIONS = {
    "positive": [
        "I was so happy.", "Pure joy.", "It made my week.",
        "Everyone in our group agreed.", "I keep telling friends about it.",
        "Exactly what I hoped for.", "No regrets whatsoever.",
        "My expectations were exceeded.",
    ],
    "negative": [
        "I was so annoyed.", "Pure frustration.", "It ruined my week.",
        "Everyone in our group complained.", "I keep warning friends about it.",
        "Nothing like what I hoped for.", "A total waste.",
        "My patience ran out.",
    ],
}  # fmt: skip

# Optional label-specific sentence endings (used sparingly).
_CLOSERS = {
    "positive": [
        "Highly recommended.", "Five stars.", "I will be back.",
        "Would recommend to anyone.", "Definitely worth it.",
        "Ten out of ten.", "A pleasant surprise.", "Count me in next time.",
    ],
    "negative": [
        "Avoid.", "One star.", "Never again.", "Save your money.",
        "What a letdown.", "Lesson learned.", "I want a refund.",
        "Stay away.",
    ],
}  # fmt: skip

# Noun phrases that take "were" rather than "was".
_PLURALS = frozenset(
    [
        "these headphones",
        "these running shoes",
        "the portions",
        "the special effects",
        "the characters",
        "the illustrations",
        "the notifications",
    ]
)

# People, who are never referred to as "it".
_PEOPLE = frozenset(["our waiter", "the receptionist"])

# Each domain: whole-item subjects with their adjectives, aspects with
# aspect-specific (positive, negative) adjectives, and verb phrases.
# "{be}" in a verb phrase is replaced by "was"/"were" to agree with the subject.
_DOMAINS: dict[str, dict] = {
    "movies": {
        "subjects": [
            "the film", "this movie", "the sequel", "the documentary",
            "the remake", "this thriller", "the comedy", "the animated feature",
            "the new superhero movie", "that horror flick", "the miniseries",
            "the indie drama",
        ],
        "positive": [
            "gripping", "moving", "hilarious", "captivating", "heartfelt",
            "beautifully shot", "thrilling", "touching", "clever",
            "unforgettable",
        ],
        "negative": [
            "boring", "predictable", "confusing", "overlong", "forgettable",
            "pretentious", "cliched", "painfully slow", "incoherent",
            "lifeless",
        ],
        "aspects": {
            "the plot": (
                ["clever", "tight", "surprising", "engaging"],
                ["slow", "muddled", "predictable", "thin"],
            ),
            "the acting": (
                ["superb", "convincing", "wonderful", "nuanced"],
                ["wooden", "stiff", "unconvincing", "hammy"],
            ),
            "the soundtrack": (
                ["haunting", "catchy", "gorgeous", "stirring"],
                ["grating", "forgettable", "intrusive", "cheesy"],
            ),
            "the ending": (
                ["satisfying", "powerful", "perfect", "unexpected"],
                ["rushed", "abrupt", "silly", "unsatisfying"],
            ),
            "the dialogue": (
                ["sharp", "witty", "natural", "funny"],
                ["clunky", "awkward", "cringeworthy", "flat"],
            ),
            "the special effects": (
                ["stunning", "seamless", "spectacular", "believable"],
                ["cheap", "dated", "distracting", "fake-looking"],
            ),
        },
        "verbs": {
            "positive": [
                "kept me on the edge of my seat", "made me laugh out loud",
                "deserves every award it gets", "{be} worth the ticket price",
                "left me smiling for days",
            ],
            "negative": [
                "put me to sleep", "dragged on forever",
                "{be} a waste of two hours", "made me walk out halfway",
                "felt like a chore to sit through",
            ],
        },
    },
    "restaurants": {
        "subjects": [
            "the restaurant", "this bistro", "the new cafe", "the pizza place",
            "that sushi bar", "the diner", "the steakhouse", "the bakery",
            "the food truck", "this noodle shop", "the brunch spot",
        ],
        "positive": [
            "welcoming", "cozy", "reasonably priced", "lively", "inviting",
            "charming",
        ],
        "negative": [
            "overpriced", "filthy", "cramped", "chaotic", "overrated",
            "dingy",
        ],
        "aspects": {
            "the food": (
                ["delicious", "fresh", "flavorful", "perfectly seasoned"],
                ["bland", "greasy", "stale", "undercooked"],
            ),
            "our waiter": (
                ["friendly", "attentive", "charming", "helpful"],
                ["rude", "careless", "dismissive", "forgetful"],
            ),
            "the service": (
                ["quick", "warm", "efficient", "flawless"],
                ["slow", "sloppy", "inattentive", "disorganized"],
            ),
            "the dessert": (
                ["heavenly", "rich", "divine", "decadent"],
                ["soggy", "too sweet", "dry", "tasteless"],
            ),
            "the coffee": (
                ["smooth", "aromatic", "strong", "perfectly brewed"],
                ["bitter", "burnt", "lukewarm", "watery"],
            ),
            "the portions": (
                ["generous", "hearty", "plentiful", "filling"],
                ["tiny", "stingy", "skimpy", "laughable"],
            ),
        },
        "verbs": {
            "positive": [
                "made me want to come back tomorrow", "{be} worth every penny",
                "exceeded my expectations",
                "{be} now my favorite place in town",
            ],
            "negative": [
                "gave me food poisoning", "ruined our anniversary dinner",
                "kept us waiting for an hour", "charged us twice",
            ],
        },
    },
    "products": {
        "subjects": [
            "this laptop", "the blender", "these headphones",
            "the vacuum cleaner", "this phone", "the coffee maker",
            "the new keyboard", "this backpack", "the smartwatch",
            "the electric kettle", "these running shoes", "the printer",
        ],
        "positive": [
            "sturdy", "reliable", "well built", "lightweight", "affordable",
            "durable", "sleek",
        ],
        "negative": [
            "flimsy", "unreliable", "cheaply made", "defective", "fragile",
            "overpriced", "useless",
        ],
        "aspects": {
            "the battery life": (
                ["excellent", "impressive", "fantastic", "long-lasting"],
                ["terrible", "pathetic", "disappointing", "awful"],
            ),
            "the build quality": (
                ["solid", "premium", "sturdy", "excellent"],
                ["flimsy", "cheap", "shoddy", "poor"],
            ),
            "the sound": (
                ["crisp", "rich", "clear", "balanced"],
                ["tinny", "muffled", "distorted", "harsh"],
            ),
            "the screen": (
                ["bright", "sharp", "vivid", "gorgeous"],
                ["dim", "blurry", "washed out", "grainy"],
            ),
            "the packaging": (
                ["neat", "sturdy", "thoughtful", "compact"],
                ["damaged", "wasteful", "flimsy", "torn"],
            ),
            "the customer support": (
                ["helpful", "responsive", "patient", "prompt"],
                ["unhelpful", "unresponsive", "rude", "slow"],
            ),
        },
        "verbs": {
            "positive": [
                "worked perfectly from day one", "held up beautifully",
                "{be} the best purchase I made this year",
                "did exactly what the box promised",
            ],
            "negative": [
                "broke after a week", "stopped working after two days",
                "fell apart within a month", "overheated constantly",
                "arrived broken",
            ],
        },
    },
    "hotels": {
        "subjects": [
            "the hotel", "the hotel room", "this resort", "the guesthouse",
            "our suite", "the hostel", "the motel", "the bed and breakfast",
            "the lodge", "the apartment we rented",
        ],
        "positive": [
            "spotless", "cozy", "quiet", "spacious", "comfortable", "charming",
        ],
        "negative": [
            "dirty", "noisy", "cramped", "smelly", "run-down", "shabby",
        ],
        "aspects": {
            "the bed": (
                ["comfortable", "soft", "huge", "cozy"],
                ["lumpy", "hard", "saggy", "creaky"],
            ),
            "the receptionist": (
                ["friendly", "welcoming", "helpful", "kind"],
                ["rude", "unhelpful", "grumpy", "careless"],
            ),
            "the breakfast": (
                ["delicious", "plentiful", "varied", "fresh"],
                ["meager", "stale", "cold", "disappointing"],
            ),
            "the view": (
                ["breathtaking", "stunning", "gorgeous", "lovely"],
                ["depressing", "ugly", "dreary", "bleak"],
            ),
            "the bathroom": (
                ["spotless", "modern", "roomy", "sparkling"],
                ["moldy", "grimy", "tiny", "filthy"],
            ),
            "the location": (
                ["perfect", "convenient", "central", "ideal"],
                ["inconvenient", "remote", "sketchy", "noisy"],
            ),
        },
        "verbs": {
            "positive": [
                "felt like a home away from home",
                "made our trip unforgettable",
                "{be} a wonderful place to stay",
            ],
            "negative": [
                "had cockroaches in the closet", "lost our reservation",
                "ruined our vacation", "smelled of mold",
            ],
        },
    },
    "books": {
        "subjects": [
            "the novel", "this book", "the memoir", "the biography",
            "the short story collection", "this cookbook", "the textbook",
            "the fantasy series", "the mystery novel", "the poetry collection",
            "the audiobook",
        ],
        "positive": [
            "engaging", "insightful", "thought-provoking", "beautifully written",
            "compelling", "witty",
        ],
        "negative": [
            "tedious", "shallow", "poorly written", "pretentious", "unreadable",
            "dull",
        ],
        "aspects": {
            "the writing": (
                ["elegant", "vivid", "lyrical", "crisp"],
                ["clumsy", "dull", "repetitive", "stilted"],
            ),
            "the characters": (
                ["memorable", "vivid", "relatable", "complex"],
                ["flat", "annoying", "unlikable", "shallow"],
            ),
            "the pacing": (
                ["brisk", "perfect", "steady", "gripping"],
                ["sluggish", "uneven", "plodding", "glacial"],
            ),
            "the translation": (
                ["faithful", "graceful", "smooth", "excellent"],
                ["awkward", "sloppy", "clumsy", "inaccurate"],
            ),
            "the final chapter": (
                ["moving", "brilliant", "satisfying", "perfect"],
                ["baffling", "rushed", "pointless", "lazy"],
            ),
            "the illustrations": (
                ["beautiful", "charming", "detailed", "delightful"],
                ["ugly", "amateurish", "sloppy", "crude"],
            ),
        },
        "verbs": {
            "positive": [
                "kept me up all night reading", "changed the way I think",
                "made me cry in the best way", "earned a spot on my shelf",
            ],
            "negative": [
                "{be} impossible to finish", "bored me to tears",
                "went straight to the donation pile", "felt like homework",
            ],
        },
    },
    "apps": {
        "subjects": [
            "this app", "the update", "the new version", "the game",
            "the photo editor", "the banking app", "this fitness tracker",
            "the music streaming service", "the browser extension",
            "the language learning app", "the calendar app",
        ],
        "positive": [
            "intuitive", "fast", "responsive", "polished", "handy", "addictive",
        ],
        "negative": [
            "buggy", "laggy", "clunky", "bloated", "confusing", "unstable",
        ],
        "aspects": {
            "the interface": (
                ["clean", "intuitive", "slick", "elegant"],
                ["cluttered", "confusing", "ugly", "clunky"],
            ),
            "the loading time": (
                ["instant", "snappy", "quick", "impressive"],
                ["painful", "endless", "sluggish", "awful"],
            ),
            "the notifications": (
                ["useful", "subtle", "timely", "helpful"],
                ["spammy", "constant", "intrusive", "annoying"],
            ),
            "the sync feature": (
                ["seamless", "reliable", "flawless", "smooth"],
                ["broken", "unreliable", "flaky", "useless"],
            ),
            "the onboarding": (
                ["friendly", "simple", "clear", "painless"],
                ["tedious", "confusing", "endless", "pushy"],
            ),
            "the subscription price": (
                ["fair", "reasonable", "cheap", "modest"],
                ["outrageous", "absurd", "steep", "excessive"],
            ),
        },
        "verbs": {
            "positive": [
                "saved me hours every week", "ran smoothly on my old phone",
                "made budgeting actually fun", "synced flawlessly everywhere",
            ],
            "negative": [
                "crashed every time I opened it", "drained my battery",
                "deleted all my notes", "kept logging me out",
            ],
        },
    },
}  # fmt: skip

# Fixed negated phrases; the label is the sentiment after negation.
_NEGATED_PHRASES = {
    "positive": [
        "{subj} {be} not bad at all.",
        "I have no complaints about {subj}.",
        "I can't find anything wrong with {subj}.",
        "{subj} never let me down.",
        "{subj} {be} not a waste of money at all.",
        "I don't regret choosing {subj} one bit.",
    ],
    "negative": [
        "{subj} {be} hardly worth it.",
        "{subj} {be} nothing special.",
        "I would not recommend {subj}.",
        "{subj} {be} not worth the money.",
        "{subj} never lived up to the hype.",
        "I can't say I enjoyed {subj}.",
    ],
}

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
