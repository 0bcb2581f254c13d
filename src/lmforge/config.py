"""Configs as dataclasses: defaults < config file (JSON or TOML) < command-line flags.

Flags are made from the fields (``order`` -> ``--order``, ``n_layers`` -> ``--n-layers``); an
unknown key in a config file is an error that lists the valid ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tomllib
import typing
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from lmforge.errors import ConfigError

__all__ = [
    "add_config_flags",
    "build_config",
    "read_config_file",
    "config_to_dict",
    "parse_sets",
    "check_type",
    "check_int",
    "check_sizes",
    "check_dropout",
    "check_fraction",
    "checked_cutoffs",
    "require_vocab_size",
]


def parse_sets(pairs: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` flags as a dict; a value is read as JSON where it parses, else kept
    as a string (``lr=3e-4`` -> 0.0003, ``pooling=mean`` -> "mean").

    Raises:
        ConfigError: a flag without ``=``.
    """
    values = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set needs KEY=VALUE, got {pair!r}")
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw
    return values


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON values (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or TOML config file into a dict.

    Raises:
        ConfigError: missing file or a syntax error, naming the file.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(f"{file}: no such config file") from None
    except OSError as err:
        raise ConfigError(f"cannot read the config file {file}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{file} is not UTF-8 at byte {err.start}; give a text file") from None
    try:
        data = tomllib.loads(text) if file.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ConfigError(
            f"{file}: not valid {file.suffix.lstrip('.') or 'JSON'} ({err})"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: a config file must hold one object of settings")
    return data


def build_config(cls: type, file_values: dict[str, Any], flag_values: dict[str, Any]) -> Any:
    """Instantiate ``cls`` from defaults, then the file's values, then the flags that were set.

    Raises:
        ConfigError: an unknown key (listing the valid ones), a value of the wrong type
            (``check_type``) or one ``cls`` rejects.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(file_values) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(unknown)} for {cls.__name__}; "
            f"valid keys: {', '.join(names)}"
        )
    flags = {k: v for k, v in flag_values.items() if k in names and v is not None}
    hints = typing.get_type_hints(cls)
    for key, value in [*file_values.items(), *flags.items()]:  # a file's, even where a flag wins
        check_type(key, value, hints[key])
    values = {**file_values, **flags}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(f"bad value for {cls.__name__}: {err}") from None


def check_type(field: str, value: object, kind: object) -> None:
    """Raise ConfigError unless ``value`` has the type of a config field annotated ``kind``:
    int fields take integers (not bools, not 1.5), float fields finite numbers, str fields
    strings, bool fields bools, tuple fields lists or tuples (of numbers when annotated so)."""
    if kind is tuple or typing.get_origin(kind) is tuple:
        items = typing.get_args(kind)[:1]
        if not isinstance(value, tuple | list):
            raise ConfigError(f"{field} must be a list, got {value!r}")
        for item in value if items else ():
            check_type(field, item, items[0])
        return
    name = getattr(kind, "__name__", str(kind))
    if kind is float:
        ok = _is_number(value) and math.isfinite(value)
    else:
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok:
        wanted = {
            "int": "an integer",
            "float": "a finite number",
            "str": "a string",
            "bool": "true or false",
        }
        raise ConfigError(
            f"{field} must be {wanted.get(name, name)}, got {value!r} ({type(value).__name__})"
        )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def add_config_flags(
    parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()
) -> None:
    """Add one ``--field-name`` flag per field of ``cls`` (default None: keep file or default)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f"(default: {default!r})"
        if typing.get_origin(kind) is tuple:
            parser.add_argument(flag, dest=f.name, nargs="*", type=float, help=help_text)
        elif kind is bool:
            parser.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, help=help_text
            )
        else:
            parser.add_argument(flag, dest=f.name, type=kind, help=help_text)


def check_int(field: str, value: object, low: int, note: str = "") -> None:
    """Raise ConfigError unless ``value`` is an integer >= low (bools are not integers)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{field} must be an integer >= {low}{note}, got {value!r}")


def check_sizes(config: object, names: tuple[str, ...]) -> None:
    """Raise ConfigError unless ``config.vocab_size`` is an integer >= 0 (0 = set from the
    tokenizer) and each field of ``names`` an integer >= 1: the sizes of a neural family."""
    check_int("vocab_size", config.vocab_size, 0, " (0 = set from the tokenizer)")
    for name in names:
        check_int(name, getattr(config, name), 1)


def require_vocab_size(config: Any) -> Any:
    """``config``, for a model to be built from; ConfigError when its ``vocab_size`` is still 0."""
    if config.vocab_size < 1:
        name = type(config).__name__
        raise ConfigError(
            f"vocab_size must be >= 1 to build a model, got {config.vocab_size}; set it from the "
            f"tokenizer ({name}(vocab_size=tokenizer.vocab_size, ...))"
        )
    return config


def check_dropout(value: object) -> None:
    """Raise ConfigError unless ``value`` is a probability in [0, 1)."""
    check_fraction("dropout", value)


def check_fraction(field: str, value: object) -> None:
    """Raise ConfigError unless ``value`` is a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ConfigError(f"{field} must be a number in [0, 1), got {value!r}")


def _is_whole_number(value: object) -> bool:
    return _is_number(value) and value % 1 == 0


def checked_cutoffs(cutoffs: object, tied: bool = False) -> tuple[int, ...]:
    """The cutoffs as a tuple of ints (JSON gives a list, CLI flags give floats), checked; with
    ``tied`` (an output layer tied to the input embedding) they must be () (a full softmax)."""
    values = tuple(cutoffs) if isinstance(cutoffs, list | tuple) else ("?",)
    if not all(_is_whole_number(c) for c in values):
        raise ConfigError(f"adaptive_cutoffs must be a tuple of integers, got {cutoffs!r}")
    values = tuple(int(c) for c in values)
    if any(c < 1 for c in values) or any(a >= b for a, b in pairwise(values)):
        raise ConfigError(
            "adaptive_cutoffs must be increasing positive token ids such as (2000, 6000), "
            f"or () for a full softmax; got {cutoffs!r}"
        )
    if tied and values:
        raise ConfigError(
            "tie_embeddings needs a full softmax; set adaptive_cutoffs to () or "
            "tie_embeddings to false"
        )
    return values
