"""The public API: __all__ is exactly what the package defines, and the registry."""

from __future__ import annotations

import pytest

import lmforge
from lmforge.errors import UnknownModelError
from lmforge.models import FAMILIES, get_family


def test_all_lists_every_public_name_and_only_those():
    public = {n for n in vars(lmforge) if not n.startswith("_") or n == "__version__"}
    modules = {n for n in public if type(getattr(lmforge, n)).__name__ == "module"}
    assert set(lmforge.__all__) == public - modules
    assert len(lmforge.__all__) == len(set(lmforge.__all__))


def test_registry_names_match_family_files():
    # One family per file, named after it; rnn.py holds the three recurrent cells.
    for name, family in FAMILIES.items():
        assert family.name == name
        module = family.model_class.__module__
        expected = (
            "lmforge.models.rnn" if name in ("rnn", "lstm", "gru") else f"lmforge.models.{name}"
        )
        assert module == expected


def test_unknown_family_lists_known_names():
    with pytest.raises(UnknownModelError, match="ngram"):
        get_family("gtp")
