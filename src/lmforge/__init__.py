"""lmforge: every generation of language model, trained on the same corpus with the same
tokenizer and measured with the same perplexity."""

from lmforge._version import __version__  # noqa: E402
from lmforge.data import BUILTIN_CORPORA, Corpus, load_corpus, read_texts  # noqa: E402
from lmforge.embed import embed  # noqa: E402
from lmforge.errors import (  # noqa: E402
    CheckpointError,
    ConfigError,
    DataError,
    LMForgeError,
    UnknownModelError,
)
from lmforge.evaluate import lines_perplexity, tokenize_lines  # noqa: E402
from lmforge.finetune import load_classifier  # noqa: E402
from lmforge.folders import load_model, save_model  # noqa: E402
from lmforge.hub import export_hf, import_hf  # noqa: E402
from lmforge.metrics import perplexity  # noqa: E402
from lmforge.models import FAMILIES, get_family  # noqa: E402
from lmforge.models.bert import BERT, BertConfig  # noqa: E402
from lmforge.models.heads import SequenceClassifier, TokenClassifier  # noqa: E402
from lmforge.models.ngram import NgramConfig, NgramEvaluation, NgramLM, kn_discounts  # noqa: E402
from lmforge.pretrain import fill_mask, pseudo_perplexity  # noqa: E402
from lmforge.tokenize import (  # noqa: E402
    TOKENIZER_KINDS,
    Tokenizer,
    load_tokenizer,
    sentence_tokens,
    train_tokenizer,
)
from lmforge.workflows import (  # noqa: E402
    evaluate_ngram,
    load_ngram,
    train_ngram,
)

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
