"""The rating app's answers: one SQLite file next to the sheet, one transaction per answer.

``RatingStore`` keeps the raters (name and the secret token of their private link) and their
answers, one row per (rater, item), replaced when the rater revises it. Each ``save`` is a
single committed transaction, so a killed server loses nothing that was answered. The database
records a fingerprint of the sheet's key and refuses to serve or import against another key.

``check_answer`` validates what a page sends before anything is stored; ``shown_swapped`` is
the seeded per-rater order of a pairwise item (whether this rater sees the sheet's B as A).
Both are plain functions, so the web app and the importer apply the same rules.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunelab.errors import DataError

CHOICES = ("A", "B", "tie")
MAX_COMMENT = 5000
RATER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS raters (
  name TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
  rater TEXT NOT NULL REFERENCES raters(name),
  item INTEGER NOT NULL,
  vals TEXT NOT NULL,            -- JSON: {criterion: 1-5} or {"preference": "A"|"B"|"tie"}
  swapped INTEGER NOT NULL,      -- pairwise: 1 when this rater was shown the sheet's B as A
  comment TEXT NOT NULL,
  updated REAL NOT NULL,
  PRIMARY KEY (rater, item));
"""


def key_fingerprint(key_path: Path) -> str:
    """SHA-256 of the key file: the database belongs to exactly this sheet."""
    return hashlib.sha256(Path(key_path).read_bytes()).hexdigest()


def shown_swapped(seed: int, rater: str, item: int) -> bool:
    """Whether ``rater`` sees item ``item``'s outputs in the reverse of the sheet's order.

    Seeded by the sheet's seed, the rater's name and the item (string seeds are hashed with
    SHA-512 by ``random``, so this is the same in every process)."""
    return random.Random(f"tunelab-ab:{seed}:{rater}:{item}").random() < 0.5


def check_answer(mode: str, criteria: list[str], body: Any) -> tuple[dict[str, Any], str]:
    """(values, comment) of a page's answer, or DataError naming what is wrong.

    Scale sheets send ``{"ratings": {criterion: 1..5, ...}, "comment": str}`` (a subset of
    the criteria is allowed, at least one); pairwise ones ``{"preference": "A"|"B"|"tie"}``."""
    if not isinstance(body, dict):
        raise DataError("the answer must be a JSON object")
    comment = body.get("comment", "")
    if not isinstance(comment, str):
        raise DataError("comment must be a string")
    if len(comment) > MAX_COMMENT:
        raise DataError(f"comment is longer than {MAX_COMMENT} characters")
    allowed = {"ratings", "comment"} if mode == "scale" else {"preference", "comment"}
    extra = sorted(set(body) - allowed)
    if extra:
        raise DataError(
            f"unknown field(s) {', '.join(extra)}; allowed: {', '.join(sorted(allowed))}"
        )
    if mode != "scale":
        choice = body.get("preference")
        if choice not in CHOICES:
            raise DataError(f"preference must be one of {', '.join(CHOICES)}, not {choice!r}")
        return {"preference": choice}, comment.strip()
    ratings = body.get("ratings")
    if not isinstance(ratings, dict) or not ratings:
        raise DataError("ratings must be an object {criterion: 1-5} with at least one rating")
    for name, value in ratings.items():
        if name not in criteria:
            raise DataError(f"unknown criterion {name!r}; this sheet has {', '.join(criteria)}")
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
            raise DataError(f"{name}={value!r} is not an integer from 1 to 5")
    return {c: ratings[c] for c in criteria if c in ratings}, comment.strip()


class RatingStore:
    """The SQLite file of one sheet. Every method opens its own connection (thread-safe)."""

    def __init__(self, path: str | Path, fingerprint: str, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise DataError(f"no rating database at {self.path}")
        with self._tx() as con:
            if create:
                con.executescript(SCHEMA)
            row = con.execute("SELECT value FROM meta WHERE key='key_sha256'").fetchone()
            if row is None and create:
                con.execute("INSERT INTO meta VALUES ('key_sha256', ?)", (fingerprint,))
            elif row is None or row[0] != fingerprint:
                raise DataError(
                    f"{self.path} holds answers to another version of the sheet (its key file "
                    "changed since); move the database away or restore the key"
                )

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One connection, one transaction: committed on success, rolled back on error."""
        try:
            con = sqlite3.connect(self.path, timeout=30)
        except sqlite3.Error as e:
            raise DataError(f"cannot open the rating database {self.path}: {e}") from None
        try:
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA foreign_keys=ON")
            with con:
                yield con
        except sqlite3.DatabaseError as e:
            raise DataError(f"rating database {self.path}: {e}") from None
        finally:
            con.close()

    def raters(self) -> dict[str, str]:
        """Rater name -> token, in the order they were added."""
        with self._tx() as con:
            rows = con.execute("SELECT name, token FROM raters ORDER BY created, name").fetchall()
        return dict(rows)

    def add_raters(self, names: list[str]) -> dict[str, str]:
        """Give each new name a fresh token (known raters keep theirs); return every rater."""
        for n in names:
            if not RATER_NAME.match(n):
                raise DataError(
                    f"rater name {n!r}: use 1-40 letters, digits, '.', '_' or '-' "
                    "(starting with a letter or digit)"
                )
        with self._tx() as con:
            known = {r[0] for r in con.execute("SELECT name FROM raters")}
            now = time.time()
            for i, n in enumerate(x for x in dict.fromkeys(names) if x not in known):
                token = secrets.token_urlsafe(24)
                con.execute("INSERT INTO raters VALUES (?, ?, ?)", (n, token, now + i * 1e-6))
        return self.raters()

    def save(
        self, rater: str, item: int, values: dict[str, Any], comment: str, swapped: bool
    ) -> None:
        """Insert or replace ``rater``'s answer to ``item`` in one committed transaction."""
        with self._tx() as con:
            con.execute(
                "INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (rater, item) DO "
                "UPDATE SET vals=excluded.vals, swapped=excluded.swapped, "
                "comment=excluded.comment, updated=excluded.updated",
                (rater, item, json.dumps(values), int(swapped), comment, time.time()),
            )

    def answers(self, rater: str | None = None) -> list[dict[str, Any]]:
        """Stored answers (all raters', or one rater's), ordered by rater and item."""
        query = "SELECT rater, item, vals, swapped, comment, updated FROM answers"
        args: tuple[str, ...] = ()
        if rater is not None:
            query, args = query + " WHERE rater=?", (rater,)
        with self._tx() as con:
            rows = con.execute(query + " ORDER BY rater, item", args).fetchall()
        return [
            {
                "rater": r,
                "item": i,
                "values": json.loads(v),
                "swapped": bool(s),
                "comment": c,
                "updated": u,
            }
            for r, i, v, s, c, u in rows
        ]
