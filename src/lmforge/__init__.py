"""lmforge: every generation of language model, trained on the same corpus with the same
tokenizer and measured with the same perplexity.

The public API is loaded on first use (PEP 562): ``import lmforge`` is light, and a name's home
module, with what it needs (torch for the neural families), is imported when the name is first
read. ``lmforge ngram ...`` and ``lmforge --version`` never import torch.
"""

import importlib

from lmforge._version import __version__

_HOMES = {  # home module -> the public names it defines
    "lmforge.data": ("BUILTIN_CORPORA", "Corpus", "load_corpus", "read_texts"),
    "lmforge.errors": (
        "CheckpointError",
        "ConfigError",
        "DataError",
        "LMForgeError",
        "UnknownModelError",
    ),
    "lmforge.evaluate": ("lines_perplexity",),
    "lmforge.finetune": ("load_classifier",),
    "lmforge.folders": ("load_model", "save_model"),
    "lmforge.hub": ("export_hf", "import_hf"),
    "lmforge.hub.embed": ("embed",),
    "lmforge.metrics": ("perplexity",),
    "lmforge.models": ("FAMILIES", "get_family"),
    "lmforge.models.bert": ("BERT", "BertConfig"),
    "lmforge.models.heads": ("SequenceClassifier", "TokenClassifier"),
    "lmforge.models.ngram": ("NgramConfig", "NgramEvaluation", "NgramLM", "kn_discounts"),
    "lmforge.pretrain": ("fill_mask", "pseudo_perplexity"),
    "lmforge.tokenize": (
        "TOKENIZER_KINDS",
        "Tokenizer",
        "load_tokenizer",
        "sentence_tokens",
        "tokenize_lines",
        "train_tokenizer",
    ),
    "lmforge.ngram": ("evaluate_ngram", "load_ngram", "train_ngram"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "__version__",
    "BUILTIN_CORPORA",
    "Corpus",
    "load_corpus",
    "read_texts",
    "LMForgeError",
    "ConfigError",
    "DataError",
    "CheckpointError",
    "UnknownModelError",
    "perplexity",
    "FAMILIES",
    "get_family",
    "BERT",
    "BertConfig",
    "fill_mask",
    "pseudo_perplexity",
    "SequenceClassifier",
    "TokenClassifier",
    "load_classifier",
    "embed",
    "export_hf",
    "import_hf",
    "NgramConfig",
    "NgramEvaluation",
    "NgramLM",
    "kn_discounts",
    "TOKENIZER_KINDS",
    "Tokenizer",
    "load_tokenizer",
    "sentence_tokens",
    "train_tokenizer",
    "evaluate_ngram",
    "load_ngram",
    "lines_perplexity",
    "load_model",
    "save_model",
    "tokenize_lines",
    "train_ngram",
]


def __getattr__(name: str):
    """Import a public name's home module on first use and keep the name here."""
    if name not in _HOME_OF:
        raise AttributeError(f"module 'lmforge' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME_OF[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
