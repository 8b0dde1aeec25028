"""WikiText as lm-evaluation-harness scores it: whole pages, detokenized.

``pages`` groups the lines of a ``wiki.*.tokens`` file into articles, as EleutherAI's
``wikitext_document_level`` dataset does: a new page starts at each level-1 heading
(`` = Title = ``). ``detokenize`` is lm-eval's ``wikitext_detokenizer``
(``lm_eval/tasks/wikitext/preprocess_wikitext.py``, MIT), ported so that tunelab scores the same
text without lm-eval installed; lm-eval counts words and bytes on the page before it.
"""

from __future__ import annotations

import re
from typing import Any

_HEADING = re.compile(r"^ = [^=].* = $")


def pages(lines: list[str]) -> list[str]:
    """The articles of a WikiText file given as its lines (without their newlines)."""
    out: list[str] = []
    current: list[str] = []
    for line in lines:
        if _HEADING.match(line) and any(x.strip() for x in current):
            out.append("\n".join(current))
            current = []
        current.append(line)
    if any(x.strip() for x in current):
        out.append("\n".join(current))
    return out


def page_rows(rows: list[dict[str, Any]], column: str = "text") -> list[dict[str, str]]:
    """Rows of one line each as rows of one page each: ``page`` (as written) and ``text``
    (detokenized, what is scored)."""
    return [
        {"page": p, "text": detokenize(p)} for p in pages([str(r.get(column, "")) for r in rows])
    ]


def detokenize(string: str) -> str:
    """lm-eval's WikiText detokenizer (see the module docstring)."""
    # contractions
    string = string.replace("s '", "s'")
    string = re.sub(r"/' [0-9]/", r"/'[0-9]/", string)
    # number separators
    string = string.replace(" @-@ ", "-")
    string = string.replace(" @,@ ", ",")
    string = string.replace(" @.@ ", ".")
    # punctuation
    string = string.replace(" : ", ": ")
    string = string.replace(" ; ", "; ")
    string = string.replace(" . ", ". ")
    string = string.replace(" ! ", "! ")
    string = string.replace(" ? ", "? ")
    string = string.replace(" , ", ", ")
    # double brackets
    string = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", string)
    string = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", string)
    string = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", string)
    string = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', string)
    string = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", string)
    # miscellaneous
    string = string.replace("= = = =", "====")
    string = string.replace("= = =", "===")
    string = string.replace("= =", "==")
    string = string.replace(" " + chr(176) + " ", chr(176))
    string = string.replace(" \n", "\n")
    string = string.replace("\n ", "\n")
    string = string.replace(" N ", " 1 ")
    string = string.replace(" 's", "'s")
    return string
