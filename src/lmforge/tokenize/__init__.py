"""Tokenizers: the one rule that turns a line of text into tokens for every model family.

``base`` holds the sentence rule, the special tokens and the ``Tokenizer`` every kind answers;
``vocab`` the word, char and jieba kinds; ``subword`` bpe, bytebpe and wordpiece (Hugging Face
``tokenizers``); ``pretrained`` an imported checkpoint's own tokenizer; ``kinds``
``train_tokenizer`` and ``load_tokenizer``; ``chat`` role tokens and chat templates. A tokenizer
is saved as one JSON file.
"""

from lmforge.tokenize.base import (
    BOS,
    BOS_ID,
    EOS,
    EOS_ID,
    MASK,
    MASK_ID,
    PAD,
    PAD_ID,
    RARE,
    SPACE_MARK,
    SPECIAL_TOKENS,
    TOKENIZER_KINDS,
    UNK,
    UNK_ID,
    WHITESPACE,
    Tokenizer,
    sentence_tokens,
    split_words,
    tokenize_lines,
)
from lmforge.tokenize.chat import (
    CHAT_TOKENS,
    DEFAULT_CHAT_TEMPLATE,
    END_OF_TURN,
    ROLE_TOKENS,
    ChatTemplate,
    encode_text,
    has_role_tokens,
    with_role_tokens,
)
from lmforge.tokenize.kinds import load_tokenizer, train_tokenizer
from lmforge.tokenize.pretrained import PRETRAINED_ROLES, PretrainedTokenizer
from lmforge.tokenize.subword import SubwordTokenizer
from lmforge.tokenize.vocab import VocabTokenizer

__all__ = [
    "PAD",
    "UNK",
    "BOS",
    "EOS",
    "MASK",
    "RARE",
    "SPECIAL_TOKENS",
    "PAD_ID",
    "UNK_ID",
    "BOS_ID",
    "EOS_ID",
    "MASK_ID",
    "TOKENIZER_KINDS",
    "SPACE_MARK",
    "WHITESPACE",
    "Tokenizer",
    "VocabTokenizer",
    "SubwordTokenizer",
    "PretrainedTokenizer",
    "PRETRAINED_ROLES",
    "train_tokenizer",
    "load_tokenizer",
    "sentence_tokens",
    "split_words",
    "tokenize_lines",
    "ROLE_TOKENS",
    "END_OF_TURN",
    "CHAT_TOKENS",
    "DEFAULT_CHAT_TEMPLATE",
    "ChatTemplate",
    "encode_text",
    "has_role_tokens",
    "with_role_tokens",
]
