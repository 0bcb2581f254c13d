"""Corpora with train/valid/test splits: the built-in ones and the user's own files."""

from lmforge.data.corpus import (
    BUILTIN_CORPORA,
    DEFAULT_TOKENIZERS,
    SPLITS,
    Corpus,
    load_corpus,
    read_texts,
)

__all__ = ["BUILTIN_CORPORA", "DEFAULT_TOKENIZERS", "SPLITS", "Corpus", "load_corpus", "read_texts"]
