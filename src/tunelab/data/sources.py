"""Read tabular data (CSV, TSV, JSONL, JSON, Parquet, hub datasets) into rows with row numbers.

CSV, TSV and JSONL are parsed here with the standard library rather than through the
``datasets`` builders: those stop at the first bad line (or skip it silently) without telling
which rows were dropped, and `strict`/`skip` handling needs exact row numbers. JSON, Parquet
and hub datasets go through ``datasets``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.errors import DataError

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".conll": "conll",
}
MAX_REPORTED = 10


@dataclass
class Table:
    """Rows of one split. ``row_ids`` are 1-based data-row numbers in the source."""

    source: str
    columns: list[str]
    rows: list[dict[str, Any]]
    row_ids: list[int]
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, idx, skipped: list[tuple[int, str]] | None = None) -> Table:
        """The rows at positions ``idx`` (in that order), with ``skipped`` as its report."""
        return Table(
            self.source,
            self.columns,
            [self.rows[i] for i in idx],
            [self.row_ids[i] for i in idx],
            list(skipped or []),
        )


class RowProblems:
    """Collects malformed rows; raises in strict mode, counts in skip mode."""

    def __init__(self, source: str, on_error: str):
        self.source, self.on_error = source, on_error
        self.items: list[tuple[int, str]] = []

    def add(self, row: int, why: str) -> None:
        self.items.append((row, why))

    def finish(self, earlier: list[tuple[int, str]] | None = None) -> list[tuple[int, str]]:
        """Return the problems (with ``earlier`` ones, row-sorted); raise in strict mode."""
        self.items = sorted([*(earlier or []), *self.items])
        if self.items and self.on_error == "strict":
            shown = "; ".join(f"row {r}: {w}" for r, w in self.items[:MAX_REPORTED])
            more = (
                f" (and {len(self.items) - MAX_REPORTED} more)"
                if len(self.items) > MAX_REPORTED
                else ""
            )
            raise DataError(
                f"{self.source}: {len(self.items)} malformed row(s): {shown}{more}. "
                "Fix them, or set data.on_error=skip to drop and count them."
            )
        return self.items


def _looks_like_conll(path: Path) -> bool:
    """Whether a .txt file reads as CoNLL columns: its first lines are ``-DOCSTART-`` or
    ``token ... TAG`` with an O / B- / I- / E- / S- / L- / U- tag last."""
    import itertools
    import re

    tag = re.compile(r"O|[BIESLU]-\S+")
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            lines = [ln.split() for ln in itertools.islice(fh, 200) if ln.strip()][:20]
    except OSError:
        return False
    lines = [p for p in lines if p[0] != "-DOCSTART-"]
    return bool(lines) and all(len(p) >= 2 and tag.fullmatch(p[-1]) for p in lines)


def detect_format(spec: str) -> str:
    if spec.startswith("hub:"):
        return "hub"
    suffix = Path(spec).suffix.lower()
    if suffix == ".txt" and _looks_like_conll(Path(spec)):
        return "conll"  # CoNLL-2003 ships as train.txt / valid.txt / test.txt
    if suffix not in FORMATS:
        raise DataError(
            f"{spec}: cannot tell the format from the extension {suffix or '(none)'!r}; "
            f"use one of {', '.join(FORMATS)} or hub:DATASET_ID (a .txt file is read as "
            "CoNLL columns when its lines are `token ... tag`)"
        )
    return FORMATS[suffix]


def _decode(path: Path, problems: RowProblems) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        if problems.on_error == "strict":
            raise DataError(
                f"{path}: not valid UTF-8 at byte {e.start} (line {line}); save the file as UTF-8"
            ) from None
        # skip mode: undecodable bytes become surrogates; rows holding them are dropped below.
        return raw.decode("utf-8", errors="surrogateescape")


def _has_surrogates(value: Any) -> bool:
    return isinstance(value, str) and any("\udc80" <= ch <= "\udcff" for ch in value)


def _read_delimited(
    path: Path, delimiter: str, problems: RowProblems, columns: list[str] | None = None
) -> tuple[list[str], list, list]:
    text = _decode(path, problems)
    # TSV as GLUE writes it: fields split on tabs, quote characters are text (a CSV-quoting
    # reader would merge STS-B/MRPC rows that hold a lone `"`).
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    try:
        header = list(columns) if columns else next(reader)
    except StopIteration:
        raise DataError(f"{path}: the file is empty (no header row)") from None
    except csv.Error as e:
        raise DataError(f"{path}: cannot parse the header: {e}") from None
    header = [h.strip() for h in header]
    if not any(header):
        raise DataError(f"{path}: the header row is empty")
    dupes = {h for h in header if header.count(h) > 1}
    if dupes:
        raise DataError(f"{path}: duplicate column name(s) in header: {', '.join(sorted(dupes))}")
    rows, ids = [], []
    n = 0
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            n += 1
            problems.add(n, f"unparseable ({e})")
            continue
        if not values or (len(values) == 1 and not values[0].strip()):
            continue  # blank line
        n += 1
        if len(values) != len(header):
            problems.add(n, f"has {len(values)} fields, the header has {len(header)}")
            continue
        row = dict(zip(header, values))
        if any(_has_surrogates(v) for v in values):
            problems.add(n, "contains bytes that are not UTF-8")
            continue
        rows.append(row)
        ids.append(n)
    return header, rows, ids


def _read_jsonl(path: Path, problems: RowProblems) -> tuple[list[str], list, list]:
    text = _decode(path, problems)
    rows, ids, columns = [], [], {}
    n = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        n += 1
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.add(n, f"invalid JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(obj, dict):
            problems.add(n, f"is a JSON {type(obj).__name__}, not an object")
            continue
        if any(_has_surrogates(v) for v in obj.values()):
            problems.add(n, "contains bytes that are not UTF-8")
            continue
        columns.update(dict.fromkeys(obj))
        rows.append(obj)
        ids.append(n)
    return list(columns), rows, ids


def _read_conll(path: Path, problems: RowProblems) -> tuple[list[str], list, list]:
    """CoNLL column files: one ``token ... tag`` line per word (first column the word, last
    the tag), a blank line between sentences, ``-DOCSTART-`` lines between documents. Each
    sentence is a row ``{tokens, tags}``; rows are numbered by sentence."""
    text = _decode(path, problems)
    rows, ids = [], []
    tokens: list[str] = []
    tags: list[str] = []
    bad: str | None = None
    n = 0

    def close() -> None:
        nonlocal tokens, tags, bad, n
        if tokens or bad:
            n += 1
            if bad:
                problems.add(n, bad)
            else:
                rows.append({"tokens": tokens, "tags": tags})
                ids.append(n)
        tokens, tags, bad = [], [], None

    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            close()
        elif len(parts) < 2:
            bad = bad or f"line {lineno} has one column; a CoNLL line is `token ... tag`"
        else:
            tokens.append(parts[0])
            tags.append(parts[-1])
    close()
    return ["tokens", "tags"], rows, ids


def _read_with_datasets(spec: str, fmt: str, split: str) -> tuple[list[str], list, list]:
    import datasets

    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    try:
        if fmt == "hub":
            ident = spec[len("hub:") :]
            name, _, conf = ident.partition(":")
            ds = datasets.load_dataset(name, conf or None, split=split)
        else:
            builder = {"json": "json", "parquet": "parquet"}[fmt]
            ds = datasets.load_dataset(builder, data_files=spec, split="train")
    except (FileNotFoundError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if fmt == "hub" and ("split" in msg.lower() or "Unknown split" in msg):
            raise DataError(f"{spec}: split {split!r} not found ({msg})") from None
        raise DataError(f"{spec}: cannot load ({msg})") from None
    except Exception as e:  # datasets raises many types (connection, Arrow, builder errors)
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if fmt == "hub" and any(
            s in msg.lower() for s in ("offline", "connect", "resolve", "network")
        ):
            raise DataError(
                f"{spec}: the hub cannot be reached (offline); use a local file"
            ) from None
        raise DataError(f"{spec}: cannot load ({type(e).__name__}: {msg})") from None
    rows = ds.to_list()
    return list(ds.column_names), rows, list(range(1, len(rows) + 1))


def read_table(
    spec: str,
    *,
    split: str = "train",
    on_error: str = "strict",
    defer: bool = False,
    columns: list[str] | None = None,
) -> Table:
    """Read one split from a file path or ``hub:ID[:CONFIG]`` (``split`` names the hub split).
    ``columns`` names the columns of a CSV/TSV file that has no header row.

    With ``defer``, malformed rows are recorded in ``Table.skipped`` even in strict mode, so
    that the caller can report them together with row-level problems it finds itself.
    """
    fmt = detect_format(spec)
    problems = RowProblems(spec, "skip" if defer else on_error)
    if fmt != "hub":
        path = Path(spec).expanduser()
        if not path.exists():
            raise DataError(f"data file not found: {spec}")
        if path.is_dir():
            raise DataError(f"{spec} is a folder; give a data file")
    if fmt in ("csv", "tsv"):
        delimiter = "," if fmt == "csv" else "\t"
        columns, rows, ids = _read_delimited(path, delimiter, problems, columns)
    elif fmt == "conll":
        columns, rows, ids = _read_conll(path, problems)
    elif fmt == "jsonl":
        columns, rows, ids = _read_jsonl(path, problems)
    else:
        columns, rows, ids = _read_with_datasets(spec, fmt, split)
    skipped = problems.finish()
    if not rows and skipped and on_error == "strict":
        RowProblems(spec, "strict").finish(skipped)
    if not rows:
        what = f" ({len(skipped)} malformed row(s) skipped)" if skipped else ""
        raise DataError(f"{spec}: no usable rows{what}; the split is empty")
    return Table(spec, columns, rows, ids, skipped)


def check_columns(table: Table, wanted: dict[str, str | None]) -> None:
    """Raise when a configured column is missing, listing the columns that exist."""
    for key, col in wanted.items():
        if col is not None and col not in table.columns:
            raise DataError(
                f"{table.source}: column {col!r} (data.{key}) not found; "
                f"columns are: {', '.join(table.columns)}"
            )


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
