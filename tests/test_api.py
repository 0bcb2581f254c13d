"""The public API: __all__ is exactly what the package defines, loaded on first use, and the
registry."""

from __future__ import annotations

import subprocess
import sys

import pytest

import lmforge
from lmforge.errors import UnknownModelError
from lmforge.models import FAMILIES, get_family


def test_all_lists_every_public_name_and_only_those():
    public = {n for n in dir(lmforge) if not n.startswith("_") or n == "__version__"}
    modules = {n for n in public if type(getattr(lmforge, n)).__name__ == "module"}
    assert set(lmforge.__all__) == public - modules
    assert len(lmforge.__all__) == len(set(lmforge.__all__))
    with pytest.raises(AttributeError, match="no attribute 'trian_ngram'"):
        lmforge.trian_ngram  # noqa: B018


def test_the_api_is_imported_on_first_use():
    # `import lmforge` imports no torch; a name brings in its home module (and only what it needs)
    script = (
        "import sys, lmforge\n"
        "light = 'torch' not in sys.modules\n"
        "lmforge.NgramLM, lmforge.train_ngram, lmforge.load_model, lmforge.FAMILIES['ngram']\n"
        "print(light, 'torch' not in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.split() == ["True", "True"], done.stderr


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
