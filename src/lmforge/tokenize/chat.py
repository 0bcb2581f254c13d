"""Role tokens and chat templates, the Hugging Face way.

A conversation is a list of messages ``{"role": "system" | "user" | "assistant", "content": ...}``.
A chat model's tokenizer holds the role tokens ``<|system|>``, ``<|user|>``, ``<|assistant|>`` and
the end-of-turn token ``<|end|>`` as special tokens (``with_role_tokens``: one id each, whatever
the tokenizer kind), and a Jinja chat template (``tokenizer_config.json``'s ``chat_template``)
renders a conversation as text. ``ChatTemplate`` renders it as ``transformers``'
``apply_chat_template`` does (a sandboxed Jinja environment, ``trim_blocks``/``lstrip_blocks``,
``add_generation_prompt``, the special tokens as ``bos_token`` etc.), and ``encode_text`` turns the
text into ids as a Hugging Face tokenizer does with added tokens: every special token string is
one id, the text between them is tokenized piece by piece.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from tokenizers import Tokenizer as HFTokenizer

from lmforge.errors import ConfigError
from lmforge.tokenize.base import SPECIAL_TOKENS, Tokenizer
from lmforge.tokenize.pretrained import PretrainedTokenizer
from lmforge.tokenize.subword import SubwordTokenizer
from lmforge.tokenize.vocab import _SPLITTERS, VocabTokenizer

__all__ = [
    "CHAT_TOKENS",
    "DEFAULT_CHAT_TEMPLATE",
    "END_OF_TURN",
    "ROLE_TOKENS",
    "ChatTemplate",
    "encode_text",
    "has_role_tokens",
    "with_role_tokens",
]

ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
END_OF_TURN = "<|end|>"
CHAT_TOKENS = (*ROLE_TOKENS.values(), END_OF_TURN)

# <s>, then each turn as <|role|>content<|end|>; a generation prompt opens the assistant's turn.
# No whitespace around the role tokens: every tokenizer kind reads the content as written.
DEFAULT_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def has_role_tokens(tokenizer: Tokenizer) -> bool:
    """Whether ``tokenizer`` holds every role token and the end-of-turn token."""
    vocab = tokenizer._index()
    return all(token in vocab for token in CHAT_TOKENS)


def with_role_tokens(tokenizer: Tokenizer) -> Tokenizer:
    """``tokenizer`` with the role tokens and ``<|end|>`` added as special tokens, each one id
    after the existing ones (the ids of the other tokens do not change); ``tokenizer`` itself
    when it holds them already."""
    missing = [token for token in CHAT_TOKENS if token not in tokenizer._index()]
    if not missing:
        return tokenizer
    if isinstance(tokenizer, VocabTokenizer):
        vocab = [*tokenizer.vocab, *missing]
        return VocabTokenizer(vocab, tokenizer.rare_threshold, _SPLITTERS[tokenizer.kind]())
    hf = HFTokenizer.from_str(json.dumps(tokenizer.to_dict()["hf"]))
    hf.add_special_tokens(missing)
    if isinstance(tokenizer, SubwordTokenizer):
        return SubwordTokenizer(tokenizer.kind, hf)
    assert isinstance(tokenizer, PretrainedTokenizer), type(tokenizer)
    return PretrainedTokenizer(
        hf, tokenizer.special_tokens, tokenizer.max_length, tokenizer.lowercase
    )


def encode_text(tokenizer: Tokenizer, text: str) -> list[int]:
    """Ids of ``text`` (no markers added) as a Hugging Face tokenizer reads a rendered chat:
    each special token string of the vocabulary (``<s>``, ``<|user|>``, ...) is its one id,
    and the pieces between them are tokenized on their own."""
    vocab = tokenizer._index()
    specials = sorted((t for t in (*SPECIAL_TOKENS, *CHAT_TOKENS) if t in vocab), key=len)
    pattern = "(" + "|".join(re.escape(t) for t in reversed(specials)) + ")"
    ids: list[int] = []
    for i, piece in enumerate(re.split(pattern, text)):
        if i % 2:  # a special token (re.split puts the captured separators at odd places)
            ids.append(vocab[piece])
        elif piece:
            ids += tokenizer.encode(piece, markers=False)
    return ids


class ChatTemplate:
    """A Jinja chat template, compiled once, rendered as ``transformers`` renders it.

    Args:
        source: the template (``tokenizer_config.json``'s ``chat_template``).

    Raises:
        ConfigError: the template is not valid Jinja.
    """

    def __init__(self, source: str = DEFAULT_CHAT_TEMPLATE) -> None:
        import jinja2
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateError as err:
            raise ConfigError(f"the chat template is not valid Jinja ({err}); fix it") from None
        self.source = source

    def render(
        self,
        messages: Sequence[dict],
        tokenizer: Tokenizer,
        add_generation_prompt: bool = False,
    ) -> str:
        """The conversation as text; ``add_generation_prompt`` opens the assistant's turn.

        The template sees ``messages``, ``add_generation_prompt`` and the tokenizer's special
        tokens as ``bos_token``, ``eos_token``, ``pad_token``, ``unk_token``, ``mask_token``.

        Raises:
            ConfigError: the template raised an error for this conversation.
        """
        import jinja2

        names = {
            f"{role}_token": tokenizer.id_to_token(getattr(tokenizer, f"{role}_id"))
            for role in ("pad", "unk", "bos", "eos", "mask")
        }
        try:
            return self._template.render(
                messages=[dict(m) for m in messages],
                add_generation_prompt=add_generation_prompt,
                **names,
            )
        except jinja2.TemplateError as err:
            raise ConfigError(f"the chat template cannot render this conversation: {err}") from None


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    """transformers' ``tojson``: plain ``json.dumps`` (Jinja's own escapes HTML)."""
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _raise_exception(message: str):
    import jinja2

    raise jinja2.exceptions.TemplateError(message)
