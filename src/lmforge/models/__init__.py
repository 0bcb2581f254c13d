"""The registry of model families: the CLI and everything else find families only through it.

``FAMILIES`` reads like a dict from family name to ``Family``; a family's module (and with it
torch, for the neural families) is imported when the family is first asked for, so that the
n-gram path (numpy only) never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from lmforge.errors import UnknownModelError
from lmforge.models.family import Family

__all__ = ["FAMILIES", "Family", "family_of", "get_family"]

_HOMES = {  # family name -> (its module in lmforge.models, the Family there)
    "ngram": ("ngram", "FAMILY"),
    "nnlm": ("nnlm", "FAMILY"),
    "rnn": ("rnn", "FAMILY_RNN"),
    "lstm": ("rnn", "FAMILY_LSTM"),
    "gru": ("rnn", "FAMILY_GRU"),
    "gpt": ("gpt", "FAMILY"),
    "elmo": ("elmo", "FAMILY"),
    "bert": ("bert", "FAMILY"),
    "seq2seq": ("seq2seq", "FAMILY"),
    "rnn_seq2seq": ("rnn_seq2seq", "FAMILY"),
}


class _Registry(Mapping):
    """The read-only mapping ``FAMILIES``: its names are ``_HOMES``'s; a family's module is
    imported on first use."""

    def __getitem__(self, name: str) -> Family:
        module, attribute = _HOMES[name]
        return getattr(importlib.import_module(f"lmforge.models.{module}"), attribute)

    def __iter__(self) -> Iterator[str]:
        return iter(_HOMES)

    def __len__(self) -> int:
        return len(_HOMES)

    def __repr__(self) -> str:
        return f"FAMILIES({', '.join(_HOMES)})"


FAMILIES: Mapping[str, Family] = _Registry()


def get_family(name: str) -> Family:
    """The registered family called ``name``.

    Raises:
        UnknownModelError: no such family; the message lists the known names.
    """
    try:
        return FAMILIES[name]
    except KeyError:
        known = ", ".join(sorted(FAMILIES))
        raise UnknownModelError(f"unknown model family {name!r}; known families: {known}") from None


def family_of(model: object) -> Family:
    """The registered family of ``model`` (a plain model, not a wrapper): its model and config
    classes are the family's. Only the model's own module is looked in.

    Raises:
        UnknownModelError: ``model`` is of no registered family.
    """
    for name, (module, _) in _HOMES.items():  # rnn, lstm and gru share a class, not a config
        if type(model).__module__ != f"lmforge.models.{module}":
            continue
        family = FAMILIES[name]
        if type(model) is family.model_class and type(model.config) is family.config_class:
            return family
    raise UnknownModelError(
        f"a {type(model).__name__} is not a model of a registered family ({', '.join(FAMILIES)})"
    )
