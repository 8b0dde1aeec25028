"""FLAN-style templates: turn labelled rows of any task into instruction data.

Each task has several phrasings (as FLAN does); one is drawn per example from a generator
seeded with the run's seed and the row number, so the choice is reproducible and does not
depend on the order rows are read in. Written for tunelab.
"""

from __future__ import annotations

import random
from typing import Any

LANGUAGES = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "cs": "Czech",
    "zh": "Chinese",
    "ja": "Japanese",
}

#: task -> (fields the prompt needs, response field, phrasings of the prompt)
TEMPLATES: dict[str, tuple[tuple[str, ...], str, tuple[str, ...]]] = {
    "sentiment": (
        ("text",),
        "label",
        (
            "What is the sentiment of this review? Answer positive or negative.\n\n{text}",
            "Review: {text}\nIs this review positive or negative?",
            "{text}\n\nDid the writer like it? Answer with positive or negative.",
            "Classify the sentiment of the following text as positive or negative.\n{text}",
        ),
    ),
    "summarization": (
        ("document",),
        "summary",
        (
            "Summarize this article in one sentence.\n\n{document}",
            "{document}\n\nWhat is a one-sentence summary of the text above?",
            "Write a single-sentence summary of the following news article.\n\n{document}",
            "Article: {document}\n\nTL;DR in one sentence:",
        ),
    ),
    "qa": (
        ("context", "question"),
        "answer",
        (
            "Read the passage and answer the question with a short span from it.\n\n"
            "Passage: {context}\n\nQuestion: {question}",
            "{context}\n\nBased on the text above, {question} Answer with words from the text.",
            "Answer the question using the context.\nContext: {context}\nQuestion: {question}",
        ),
    ),
    "translation": (
        ("source", "src_lang", "tgt_lang"),
        "target",
        (
            "Translate from {src_lang} to {tgt_lang}:\n\n{source}",
            "{source}\n\nTranslate this sentence into {tgt_lang}.",
            "How do you say the following {src_lang} sentence in {tgt_lang}?\n{source}",
        ),
    ),
    "yesno": (
        ("passage", "question"),
        "answer",
        (
            "{passage}\n\nQuestion: {question}?\nAnswer yes or no.",
            "Read the text and answer yes or no.\n\nText: {passage}\n\nQuestion: {question}?",
            "Based on this passage, {question}? Answer yes or no.\n\n{passage}",
        ),
    ),
}


def get_path(row: dict[str, Any], path: str) -> Any:
    """``row["answers"]["text"][0]`` for the path ``answers.text.0``; None when absent."""
    value: Any = row
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.lstrip("-").isdigit():
            i = int(part)
            value = value[i] if -len(value) <= i < len(value) else None
        else:
            return None
        if value is None:
            return None
    return value


def _text(value: Any, field: str) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if field in ("src_lang", "tgt_lang") and isinstance(value, str):
        return LANGUAGES.get(value, value)
    return str(value)


def render(
    task: str, row: dict[str, Any], fields: dict[str, str], seed: int, row_id: int
) -> tuple[str, Any]:
    """(prompt, response) for one row; ``fields`` maps template fields to column paths.

    The response is the raw value (a list for several reference answers); raises KeyError
    naming the missing field."""
    needs, out_field, phrasings = TEMPLATES[task]
    values = {}
    for f in (*needs, out_field):
        v = get_path(row, fields.get(f, f))
        if v is None or (isinstance(v, str) and not v.strip()):
            raise KeyError(f"{f} ({fields.get(f, f)}) is missing or empty")
        values[f] = v
    rng = random.Random(f"{seed}:{row_id}")
    phrasing = phrasings[rng.randrange(len(phrasings))]
    prompt = phrasing.format(**{f: _text(values[f], f) for f in needs})
    return prompt, values[out_field]


def render_prompt(template: str, row: dict[str, Any]) -> str:
    """A prompt from a user's template: Jinja when it holds ``{{``/``{%`` (as
    lm-evaluation-harness's ``doc_to_text``), else Python format fields with dotted paths.
    Raises KeyError naming a field the row lacks."""
    if "{{" in template or "{%" in template:
        import jinja2

        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        try:
            return env.from_string(template).render(**row)
        except jinja2.UndefinedError as e:
            raise KeyError(f"task.prompt: {e.message}") from None
    import string

    out = []
    for literal, name, spec, _conversion in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        v = get_path(row, name) if name else None
        if v is None:
            raise KeyError(f"task.prompt: the row has no {name!r}")
        out.append(format(v if isinstance(v, str) else str(v), spec or ""))
    return "".join(out)
