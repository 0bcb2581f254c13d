"""The model catalogue: industrial large models and the generations lmforge implements, each row
with a sourced parameter count, its date, what it is and where that is written.

The facts live in ``catalogue.json`` beside this module (one row per model, a ``source`` URL on
every row); this module reads and checks them, attaches a server's local model folders to the
lmforge rows and prints the table of ``lmforge catalogue``. It imports no torch.

Units: ``parameters`` is an integer count, null when never published (GPT-4) or not applicable (a
system that only calls other models); ``seed_parameters`` is the seed table's figure as written,
in 亿 (1e8) parameters.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import unicodedata
from pathlib import Path

from lmforge.errors import DataError

__all__ = ["CATALOGUE_PATH", "catalogue_rows", "format_catalogue", "load_catalogue"]

CATALOGUE_PATH = Path(__file__).with_name("catalogue.json")

REQUIRED_KEYS = (
    "id",
    "name",
    "group",
    "organisation",
    "released",
    "modality",
    "kind",
    "parameters",
    "parameters_text",
    "seed_parameters",
    "summary",
    "source",
    "see_also",
    "note",
    "lmforge_family",
    "how",
)
GROUPS = ("industrial", "lmforge")
KINDS = ("model", "system", "port")
HOW_STEPS = ("train", "evaluate", "serve")
_DATE = re.compile(r"\d{4}-\d{2}(-\d{2})?")
_COLUMNS = (  # header, row key: the terminal table of format_catalogue
    ("name", "name"),
    ("released", "released"),
    ("parameters", "parameters_text"),
    ("modality", "modality"),
    ("organisation", "organisation"),
)


def load_catalogue() -> list[dict]:
    """Every row of the shipped catalogue, checked, in file order (industrial rows first).

    The file is read and checked once; each call returns fresh copies, so a caller may change
    its rows freely.

    Raises:
        DataError: the file is missing or not JSON, or a row lacks a key, has an empty or non-http
            ``source``, a bad value or a duplicate id; the message names the row.
    """
    return copy.deepcopy(_read_rows(CATALOGUE_PATH))


def catalogue_rows(local_folders: dict[str, list[dict]] | None = None) -> list[dict]:
    """The catalogue's rows, each lmforge row with ``"local"``: the local model folders of its
    family.

    Args:
        local_folders: family name (``"gpt"``) -> the caller's models of that family, as dicts
            such as ``{"id", "perplexity", "parameters"}``; a family with no row is ignored.
            Default: no local models (empty lists).
    """
    local_folders = local_folders or {}
    rows = load_catalogue()
    for row in rows:
        if row["group"] == "lmforge":
            row["local"] = [dict(m) for m in local_folders.get(row["lmforge_family"], [])]
    return rows


def format_catalogue(rows: list[dict]) -> str:
    """A plain text table of ``rows`` for the terminal: name, released, parameters, modality and
    organisation, columns aligned by display width (a CJK character counts two)."""
    table = [[header for header, _ in _COLUMNS]]
    table += [[str(row.get(key) or "-") for _, key in _COLUMNS] for row in rows]
    widths = [max(_width(line[i]) for line in table) for i in range(len(_COLUMNS))]
    lines = []
    for n, cells in enumerate(table):
        padded = [cell + " " * (w - _width(cell)) for cell, w in zip(cells, widths, strict=True)]
        lines.append("  ".join(padded).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(f"{len(rows)} models; sources, notes, commands: lmforge catalogue --json")
    return "\n".join(lines)


def _width(text: str) -> int:
    """Terminal columns of ``text``: East Asian wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


@functools.cache
def _read_rows(path: Path) -> tuple[dict, ...]:
    """The checked rows of the catalogue file at ``path`` (cached per path; read-only)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: the model catalogue is missing; reinstall lmforge") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not UTF-8 JSON ({err}); reinstall lmforge") from None
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        raise DataError(f'{path}: expected {{"rows": [...]}} with at least one row')
    seen: set[str] = set()
    for number, row in enumerate(rows, 1):
        problem = _row_problem(row)
        name = (row.get("id") or row.get("name")) if isinstance(row, dict) else None
        label = f"row {number}" + (f" ({name})" if name else "")
        if problem is None and row["id"] in seen:
            problem = "its id is already used by an earlier row"
        if problem:
            raise DataError(f"{path}: {label}: {problem}")
        seen.add(row["id"])
    return tuple(rows)


def _row_problem(row: object) -> str | None:
    """What is wrong with one catalogue row, or None."""
    if not isinstance(row, dict):
        return f"expected an object, got {type(row).__name__}"
    missing = [key for key in REQUIRED_KEYS if key not in row]
    if missing:
        return f"missing {', '.join(missing)}"
    for key in ("id", "name", "organisation", "modality", "parameters_text", "summary"):
        if not isinstance(row[key], str) or not row[key].strip():
            return f"{key} must be a non-empty string"
    source = row["source"]
    if not isinstance(source, str) or not source.startswith(("http://", "https://")):
        return f"source must be an http(s) URL, got {source!r}"
    if not isinstance(row["see_also"], list) or not all(
        isinstance(url, str) and url.startswith(("http://", "https://")) for url in row["see_also"]
    ):
        return "see_also must be a list of http(s) URLs"
    if row["group"] not in GROUPS:
        return f"group must be one of {', '.join(GROUPS)}, got {row['group']!r}"
    if row["kind"] not in KINDS:
        return f"kind must be one of {', '.join(KINDS)}, got {row['kind']!r}"
    if not isinstance(row["released"], str) or not _DATE.fullmatch(row["released"]):
        return f"released must be YYYY-MM or YYYY-MM-DD, got {row['released']!r}"
    count = row["parameters"]
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        return f"parameters must be a count or null, got {count!r}"
    if row["group"] == "lmforge":
        how = row["how"]
        if not isinstance(row["lmforge_family"], str) or not row["lmforge_family"]:
            return "an lmforge row needs lmforge_family, a family name of lmforge's registry"
        if not isinstance(how, dict) or any(not how.get(step) for step in HOW_STEPS):
            return f"an lmforge row needs how: {{{', '.join(HOW_STEPS)}}} commands"
    return None
