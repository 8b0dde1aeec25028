"""Dialogue transcripts as chat messages."""

from __future__ import annotations

import re

_TURN = re.compile(r"\n\n(Human|Assistant):")
_ROLES = {"Human": "user", "Assistant": "assistant"}


def hh_messages(transcript: str) -> list[dict[str, str]] | None:
    """Anthropic HH-RLHF's ``\\n\\nHuman: ...\\n\\nAssistant: ...`` text as chat messages, the
    empty turn a prompt ends with (``\\n\\nAssistant:``) dropped; None when it is no such
    transcript (no turn marker first, or an empty turn before the end)."""
    parts = _TURN.split(transcript)
    if len(parts) < 3 or parts[0].strip():
        return None
    msgs = [
        {"role": _ROLES[role], "content": text.strip()}
        for role, text in zip(parts[1::2], parts[2::2])
    ]
    if msgs and not msgs[-1]["content"] and msgs[-1]["role"] == "assistant":
        msgs.pop()
    if not msgs or any(not m["content"] for m in msgs):
        return None
    return msgs
