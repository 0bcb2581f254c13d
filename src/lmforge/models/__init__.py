"""The registry of model families: the CLI and everything else find families only through it."""

from __future__ import annotations

from lmforge.errors import UnknownModelError
from lmforge.models import bert, elmo, gpt, ngram, nnlm, rnn, rnn_seq2seq, seq2seq
from lmforge.models.family import Family

__all__ = ["FAMILIES", "Family", "family_of", "get_family"]

FAMILIES: dict[str, Family] = {
    "ngram": ngram.FAMILY,
    "nnlm": nnlm.FAMILY,
    "rnn": rnn.FAMILY_RNN,
    "lstm": rnn.FAMILY_LSTM,
    "gru": rnn.FAMILY_GRU,
    "gpt": gpt.FAMILY,
    "elmo": elmo.FAMILY,
    "bert": bert.FAMILY,
    "seq2seq": seq2seq.FAMILY,
    "rnn_seq2seq": rnn_seq2seq.FAMILY,
}


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
    classes are the family's.

    Raises:
        UnknownModelError: ``model`` is of no registered family.
    """
    for family in FAMILIES.values():  # rnn, lstm and gru share a class, not a config class
        if type(model) is family.model_class and type(model.config) is family.config_class:
            return family
    raise UnknownModelError(
        f"a {type(model).__name__} is not a model of a registered family ({', '.join(FAMILIES)})"
    )
