"""lmforge: every generation of language model, trained on the same corpus with the same
tokenizer and measured with the same perplexity."""

__version__ = "0.1.0"

from lmforge.data import BUILTIN_CORPORA, Corpus, load_corpus, read_texts  # noqa: E402
from lmforge.errors import (  # noqa: E402
    CheckpointError,
    ConfigError,
    DataError,
    LMForgeError,
    UnknownModelError,
)
from lmforge.metrics import perplexity  # noqa: E402
from lmforge.finetune import SequenceClassifier, TokenClassifier, load_classifier  # noqa: E402
from lmforge.hub import embed, export_hf, import_hf  # noqa: E402
from lmforge.models import FAMILIES, get_family  # noqa: E402
from lmforge.models.bert import BERT, BertConfig  # noqa: E402
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
    save_ngram,
    tokenize_lines,
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
    "save_ngram",
    "tokenize_lines",
    "train_ngram",
]
