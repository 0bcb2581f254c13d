"""Built-in and user corpora with train/valid/test splits.

A corpus is three lists of strings. Text files are read the way KenLM's ``lmplz`` reads them:
every line is one item, empty lines included, so an empty line in the Brown corpus (the end of a
text) stays an item of its own. Bytes are decoded as strict UTF-8; every problem with the input
is a :class:`~lmforge.errors.DataError` that names the file, what is wrong and what to do.

The built-in corpora (``BUILTIN_CORPORA``) ship inside the package as xz-compressed ``.txt``
files under ``lmforge/data/builtin/<name>/``; see the README there for their source and licence.
"""

from __future__ import annotations

import codecs
import difflib
import gzip
import json
import lzma
import os
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from lmforge.errors import ConfigError, DataError

__all__ = [
    "BUILTIN_CORPORA",
    "DEFAULT_TOKENIZERS",
    "SPLITS",
    "Corpus",
    "load_corpus",
    "read_jsonl",
    "read_texts",
]

BUILTIN_CORPORA: tuple[str, ...] = ("brown", "tang")
"""Names accepted by :func:`load_corpus` for the corpora shipped with lmforge."""

SPLITS: tuple[str, ...] = ("train", "valid", "test")
"""The split names of every corpus, in order."""

# The tokenizer a corpus gets when none is asked for ("none": whitespace words, as lmplz reads).
DEFAULT_TOKENIZERS = {"tang": "char", "couplets": "char"}

_COMPRESSED = {".xz": lzma.decompress, ".gz": gzip.decompress}
_INPUT_KINDS = "a .txt file, a .jsonl file or a folder of .txt files"


@dataclass(frozen=True)
class Corpus:
    """A named corpus split into train, valid and test items.

    Each item is one line of the source: a sentence, paragraph or document, possibly empty.

    Attributes:
        name: The built-in name, or the file (or folder) stem of a user corpus.
        train: Items to fit or train on.
        valid: Items for model selection and early stopping.
        test: Items for the final perplexity.
    """

    name: str
    train: list[str]
    valid: list[str]
    test: list[str]

    def split(self, name: str) -> list[str]:
        """Return the items of one split.

        Args:
            name: One of ``"train"``, ``"valid"``, ``"test"``.

        Returns:
            The list of items of that split (not a copy).

        Raises:
            ConfigError: If ``name`` is not a split name.
        """
        if name not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {name!r}")
        return getattr(self, name)

    UNIT = "items"  # what the repr counts

    def __repr__(self) -> str:
        unit = self.UNIT
        return (
            f"{type(self).__name__}(name={self.name!r}, train={len(self.train)} {unit}, "
            f"valid={len(self.valid)} {unit}, test={len(self.test)} {unit})"
        )


def read_texts(path: str | os.PathLike, text_field: str = "text") -> list[str]:
    """Read the items of one text source.

    * ``.txt`` (or any other name): every line is one item, empty lines included; the line end
      (``\\n`` or ``\\r\\n``) is removed and a final newline adds no empty item.
    * ``.txt.xz`` / ``.txt.gz``: the same after decompression.
    * ``.jsonl`` (also ``.jsonl.xz`` / ``.jsonl.gz``): one JSON object per non-blank line; the
      item is its string field ``text_field``.
    * a folder: every ``*.txt`` file in it, sorted by name, concatenated.

    Args:
        path: The file or folder.
        text_field: The field that holds the text in a ``.jsonl`` file.

    Returns:
        The items, in file order.

    Raises:
        DataError: If the path is missing, empty, not UTF-8, or a JSONL line is malformed.
    """
    path = Path(path)
    if path.is_dir():
        return _read_folder(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; give {_INPUT_KINDS}")
    if not path.is_file():
        raise DataError(f"{path} is not a regular file or folder; give {_INPUT_KINDS}")
    if _inner_suffix(path) == ".jsonl":
        return [_text_field(record, text_field, path, n) for n, record in read_jsonl(path)]
    text = _read_text(path)
    if _is_empty(text):
        raise DataError(f"{path} is empty; give a file with some text")
    return _split_lines(text)


def read_jsonl(path: str | os.PathLike, shape: str = "JSON object") -> list[tuple[int, dict]]:
    """The records of a JSON Lines file (also ``.jsonl.xz`` / ``.jsonl.gz``), in order.

    Only ``\\n`` (or ``\\r\\n``) ends a record: a JSON string may hold other line separators
    (U+2028), where ``str.splitlines`` would cut it. Blank lines are skipped.

    Args:
        path: the file.
        shape: what a line holds, for the error messages (``'{"text": ..., "label": ...}'``).

    Returns:
        (line number, object) of every non-blank line.

    Raises:
        DataError: the file is missing, unreadable, not UTF-8 or holds no record, or a line is
            not a JSON object; the message names the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; give a JSON Lines file, one {shape} per line")
    records = []
    for number, line in enumerate(_split_lines(_read_text(path)), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(
                f"{path} line {number}: invalid JSON ({error.msg} at column {error.colno}); "
                f"give one {shape} per line"
            ) from None
        except RecursionError:
            raise DataError(
                f"{path} line {number}: JSON nested too deeply to read; give one {shape} per line"
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"{path} line {number}: expected a JSON object, got {line[:40]!r}; "
                f"give one {shape} per line"
            )
        records.append((number, record))
    if not records:
        raise DataError(f"{path} is empty; give one {shape} per line")
    return records


def load_corpus(
    source: str | os.PathLike,
    *,
    valid: str | os.PathLike | None = None,
    test: str | os.PathLike | None = None,
    valid_ratio: float = 0.05,
    test_ratio: float = 0.05,
    seed: int = 0,
    text_field: str = "text",
) -> Corpus:
    """Load a built-in corpus by name, or a user corpus from a path.

    A built-in corpus comes with its own splits. For a path, a split given as a file (``valid``,
    ``test``) is read from that file; a split not given is drawn from ``source``: the items are
    shuffled with ``np.random.default_rng(seed).permutation``, the first
    ``round(n * test_ratio)`` go to test, the next ``round(n * valid_ratio)`` to valid, the rest
    to train, and every split keeps the original line order.

    Args:
        source: A name in ``BUILTIN_CORPORA`` (given as ``str``), or a path accepted by
            :func:`read_texts`.
        valid: Optional file (or folder) of validation items.
        test: Optional file (or folder) of test items.
        valid_ratio: Fraction of ``source`` held out as valid when ``valid`` is not given.
        test_ratio: Fraction of ``source`` held out as test when ``test`` is not given.
        seed: Seed of the split permutation.
        text_field: The field that holds the text in ``.jsonl`` files.

    Returns:
        The corpus; a user corpus is named after the file stem of ``source``.

    Raises:
        ConfigError: If a ratio or the seed is out of range, or split files are given with a
            built-in corpus.
        DataError: If a source is missing or unreadable, or too small to split.
    """
    _check_split_config(valid_ratio, test_ratio, seed)
    if isinstance(source, str) and source in BUILTIN_CORPORA:
        if valid is not None or test is not None:
            raise ConfigError(
                f"built-in corpus {source!r} has its own valid and test splits; "
                "give valid/test files only with a corpus file or folder"
            )
        return _load_builtin(source)
    path = Path(source)
    if not path.exists():
        raise DataError(_missing_source_message(source))
    items = read_texts(path, text_field)
    valid_items = read_texts(valid, text_field) if valid is not None else None
    test_items = read_texts(test, text_field) if test is not None else None
    test_ratio = 0.0 if test is not None else test_ratio
    valid_ratio = 0.0 if valid is not None else valid_ratio
    train, drawn_valid, drawn_test = _split_by_ratio(items, valid_ratio, test_ratio, seed)
    for split, drawn, ratio in (
        ("test", drawn_test, test_ratio),
        ("valid", drawn_valid, valid_ratio),
    ):
        if ratio > 0 and not drawn:
            raise DataError(_too_small_message(path, len(items), split, ratio))
    if not train:
        raise DataError(_too_small_message(path, len(items), "train", None))
    return Corpus(
        _stem(path),
        train,
        drawn_valid if valid_items is None else valid_items,
        drawn_test if test_items is None else test_items,
    )


def _load_builtin(name: str) -> Corpus:
    """Load the shipped splits of a built-in corpus."""
    folder = resources.files("lmforge.data").joinpath("builtin", name)
    splits = {}
    for split in SPLITS:
        resource = folder.joinpath(f"{split}.txt.xz")
        label = Path(f"lmforge/data/builtin/{name}/{split}.txt.xz")
        try:
            data = resource.read_bytes()
        except OSError as error:
            raise DataError(
                f"{label}: built-in data is missing ({error.strerror or error}); reinstall lmforge"
            ) from None
        splits[split] = _split_lines(_decode(_decompress(data, label), label))
    return Corpus(name, splits["train"], splits["valid"], splits["test"])


def _read_folder(folder: Path) -> list[str]:
    """Concatenate the lines of every ``*.txt`` file in ``folder``, sorted by name."""
    files = sorted((p for p in folder.glob("*.txt") if p.is_file()), key=lambda p: p.name)
    if not files:
        raise DataError(f"folder {folder} has no .txt files; put the text in .txt files there")
    items: list[str] = []
    has_text = False
    for file in files:
        text = _read_text(file)
        has_text = has_text or not _is_empty(text)
        items.extend(_split_lines(text))
    if not has_text:
        raise DataError(f"folder {folder} is empty (all its .txt files are); give some text")
    return items


def _read_text(path: Path) -> str:
    """Read a file's bytes, decompress ``.xz``/``.gz``, and decode strict UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from None
    return _decode(_decompress(data, path), path)


def _decompress(data: bytes, path: Path) -> bytes:
    """Decompress ``data`` according to the suffix of ``path`` (``.xz``, ``.gz`` or none)."""
    decompress = _COMPRESSED.get(path.suffix.lower())
    if decompress is None:
        return data
    try:
        return decompress(data)
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as error:
        raise DataError(
            f"{path} is not a valid {path.suffix} file ({error}); "
            f"give an intact {path.suffix} file or the uncompressed text"
        ) from None


def _decode(data: bytes, path: Path) -> str:
    """Decode ``data`` as strict UTF-8, dropping a leading byte-order mark."""
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return str(memoryview(data)[start:], "utf-8")
    except UnicodeDecodeError as error:
        offset = start + error.start
        line = data.count(b"\n", 0, offset) + 1
        where = " of the decompressed text" if path.suffix.lower() in _COMPRESSED else ""
        raise DataError(
            f"{path} is not UTF-8: byte 0x{data[offset]:02x} at byte offset {offset}{where} "
            f"(line {line}) cannot be decoded; re-encode the file as UTF-8, "
            f"e.g. `iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}`"
        ) from None


def _split_lines(text: str) -> list[str]:
    """Split text into lines like ``lmplz``: keep empty lines, drop the line ends.

    Only ``\\n`` and ``\\r\\n`` end a line (unlike ``str.splitlines``, which also splits at
    form feeds and Unicode separators that may be part of the text).
    """
    if not text:
        return []
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _text_field(record: dict, text_field: str, path: Path, number: int) -> str:
    """The string field ``text_field`` of a JSON Lines record."""
    value = record.get(text_field)
    if not isinstance(value, str):
        raise DataError(
            f"{path} line {number} has no string field {text_field!r}; give every line "
            f'a "{text_field}" string, or set text_field to the field that holds the text'
        )
    return value


def _split_by_ratio(
    items: list[str], valid_ratio: float, test_ratio: float, seed: int
) -> tuple[list[str], list[str], list[str]]:
    """Draw test and valid items at random; every split keeps the original order.

    Returns:
        ``(train, valid, test)``.
    """
    n = len(items)
    n_test = round(n * test_ratio)
    n_valid = round(n * valid_ratio)
    order = np.random.default_rng(seed).permutation(n)
    labels = np.zeros(n, dtype=np.int8)  # 0 train, 1 valid, 2 test
    labels[order[:n_test]] = 2
    labels[order[n_test : n_test + n_valid]] = 1

    def pick(label: int) -> list[str]:
        return [items[i] for i in np.flatnonzero(labels == label).tolist()]

    return pick(0), pick(1), pick(2)


def _check_split_config(valid_ratio: float, test_ratio: float, seed: int) -> None:
    """Raise ConfigError unless the ratios and seed can define a split."""
    for name, ratio in (("valid_ratio", valid_ratio), ("test_ratio", test_ratio)):
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio < 1:
            raise ConfigError(f"{name} must be a number in [0, 1), got {ratio!r}")
    if valid_ratio + test_ratio >= 1:
        raise ConfigError(
            f"valid_ratio + test_ratio must be below 1 to leave text for training, "
            f"got {valid_ratio} + {test_ratio}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")


def _too_small_message(path: Path, n_items: int, split: str, ratio: float | None) -> str:
    """Explain that a corpus has too few lines to give a non-empty split."""
    share = f" at {split}_ratio={ratio}" if ratio is not None else ""
    return (
        f"{path} has {n_items} lines, too few for a non-empty {split} split{share}; "
        "give more text, or pass separate valid/test files (--valid/--test)"
    )


def _missing_source_message(source: str | os.PathLike) -> str:
    """Explain a corpus source that is neither a built-in name nor an existing path."""
    builtins = ", ".join(BUILTIN_CORPORA)
    text = os.fspath(source)
    close = difflib.get_close_matches(text, BUILTIN_CORPORA, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"{text}: no such file or folder{hint}; give {_INPUT_KINDS} "
        f"(or a built-in corpus: {builtins})"
    )


def _inner_suffix(path: Path) -> str:
    """The suffix under any compression suffix: ``a.jsonl.xz`` -> ``.jsonl``."""
    if path.suffix.lower() in _COMPRESSED:
        path = path.with_suffix("")
    return path.suffix.lower()


def _stem(path: Path) -> str:
    """The corpus name of a path: ``wiki.txt.xz`` -> ``wiki``, folder ``books/`` -> ``books``."""
    if path.is_dir():
        return path.resolve().name
    if path.suffix.lower() in _COMPRESSED:
        path = path.with_suffix("")
    return path.stem


def _is_empty(text: str) -> bool:
    """Whether text has no characters other than whitespace (stops at the first one)."""
    return not text or text.isspace()
