"""The models a server holds: each loaded once through ``lmforge.folders.load_model``, with what
its family can do (complete, chat, translate, embed, fill masks) and the facts ``/v1/models``
shows; an any-to-any folder (``lmforge.omni``) is loaded as a ``ServedOmni``, which only chats
(its route: ``lmforge.serve.omni``).

Every request names a model by id; ids come from the served set only (``ModelSet.get``), so a
request can never name a path. A family that cannot do what a request asks raises
``Refused(status, message)``, which the server turns into the OpenAI error shape.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lmforge.checkpoint import CONFIG_FILE
from lmforge.errors import ConfigError, DataError
from lmforge.folders import load_model
from lmforge.models import family_of
from lmforge.models.ngram import EOS_ID, UNK_ID
from lmforge.nn.sampling import Sampler
from lmforge.omni.chat import reply_files, user_turn
from lmforge.omni.model import Omni, is_omni_folder
from lmforge.omni.tasks import TASKS
from lmforge.omni.vocab import encode_conversation
from lmforge.serve.engine import Engine, decoder_for
from lmforge.tokenize import (
    BOS,
    END_OF_TURN,
    ChatTemplate,
    encode_text,
    has_role_tokens,
    tokenize_lines,
)

__all__ = [
    "ModelSet",
    "Refused",
    "ServedModel",
    "ServedOmni",
    "find_folders",
    "parse_model_args",
]

LN10 = math.log(10.0)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Refused(Exception):
    """A request the server must refuse: ``status`` and a message that says why."""

    def __init__(
        self, status: int, message: str, code: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


@dataclass(eq=False)
class ServedModel:
    """One served model folder.

    Attributes:
        id: the name requests use (the folder's name, an ARPA file's name without ``.arpa``,
            or the NAME of ``NAME=FOLDER``).
        folder: where it was loaded from.
        model, tokenizer, record: as ``load_model`` returns them.
        engine: the continuous-batching engine of a generating model, else None.
    """

    id: str
    folder: Path
    model: object
    tokenizer: object
    record: dict
    engine: Engine | None = None
    template: ChatTemplate | None = None
    facts: dict | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    lock: threading.Lock = field(default_factory=threading.Lock)  # scoring outside the engine

    @property
    def family(self):
        return family_of(self.model)

    @property
    def counting(self) -> bool:
        return self.family.fitting == "counting"

    @property
    def can_complete(self) -> bool:
        return self.counting or self.family.promptable

    @property
    def can_chat(self) -> bool:
        t = self.tokenizer
        return (
            self.family.promptable
            and t is not None
            and bool(t.chat_template)
            and has_role_tokens(t)
        )

    @property
    def can_embed(self) -> bool:
        return self.family.embeds or self.family.name == "elmo"

    @property
    def can_fill_mask(self) -> bool:
        return self.family.task == "mlm" and hasattr(self.model, "mlm_logits")

    @property
    def vocab_size(self) -> int:
        return self.model.vocab_size if self.counting else self.tokenizer.vocab_size

    @property
    def context_length(self) -> int | None:
        config = getattr(self.model, "config", None)
        return getattr(config, "max_seq_len", None)

    def capabilities(self) -> list[str]:
        can = {
            "completions": self.can_complete or self.family.seq2seq,
            "chat": self.can_chat,
            "embeddings": self.can_embed,
            "fill-mask": self.can_fill_mask,
            "translation": self.family.seq2seq,
            "logprobs": self.can_complete,
        }
        return [name for name, yes in can.items() if yes]

    def info(self) -> dict:
        """The ``/v1/models`` entry: the OpenAI fields and lmforge's (worked out once: a served
        folder does not change)."""
        if self.facts is None:
            self.facts = self._facts()
        return dict(self.facts)

    def _facts(self) -> dict:
        params = sum(self.model.ngram_counts) if self.counting else self.model.num_parameters()
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": "lmforge",
            "family": self.family.name,
            "summary": self.family.summary,
            "parameters": int(params),
            "parameters_kind": "n-grams" if self.counting else "weights",
            "corpus": self.record.get("corpus") or self.record.get("pairs"),
            "tokenizer": self.record.get("tokenizer")
            or ("whitespace words" if self.tokenizer is None else type(self.tokenizer).__name__),
            "perplexity": recorded_perplexity(self.folder, self.record),
            "context_length": self.context_length,
            "capabilities": self.capabilities(),
            "chat_template": bool(self.tokenizer is not None and self.tokenizer.chat_template),
        }

    # -- tokens ------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without markers (word ids for an n-gram model)."""
        if self.counting:
            words = tokenize_lines([text], self.tokenizer)[0]
            return [self.model.word_ids.get(w, UNK_ID) for w in words]
        return self.tokenizer.encode(text, markers=False)

    def pieces(self, ids: list[int]) -> list[str]:
        if self.counting:
            return [self.model.vocab[i] for i in ids]
        return [self.tokenizer.decode([i]) or self.tokenizer.id_to_token(i) for i in ids]

    def decode(self, ids: list[int]) -> str:
        if self.counting:
            return " ".join(self.model.vocab[i] for i in ids)
        return self.tokenizer.decode(ids)

    def continuation(self, prompt: list[int], ids: list[int], chat: bool = False) -> str:
        """The text that ``ids`` add after ``prompt`` (spacing as the tokenizer decodes it); a
        chat reply's text on its own (``lmforge.chat.decode_reply``)."""
        if not ids:
            return ""
        if chat:
            from lmforge.chat.session import decode_reply

            return decode_reply(self.tokenizer, ids)
        if self.counting:
            return (" " if prompt else "") + self.decode(ids)
        tail = prompt[-4:]  # enough context for the spacing; the whole prompt costs per token
        before = self.tokenizer.decode(tail)
        both = self.tokenizer.decode(tail + ids)
        return both[len(before) :] if both.startswith(before) else self.tokenizer.decode(ids)

    def bos(self) -> list[int]:
        return [] if self.counting else [self.tokenizer.token_to_id(BOS)]

    def completion_prompt(self, prompt: str | list[int], limit: int) -> list[int]:
        """The ids a completion reads: ``<s>`` (an n-gram model adds its own) and the prompt's
        tokens (``prompt``: text, or token ids).

        Raises:
            Refused: the model cannot complete, or the prompt is too long.
        """
        if not self.can_complete:
            raise Refused(400, self.cannot("complete text", "/v1/embeddings or /v1/fill-mask"))
        if isinstance(prompt, list) and not all(0 <= i < self.vocab_size for i in prompt):
            raise Refused(400, f"token ids must be in 0..{self.vocab_size - 1}", param="prompt")
        ids = self.bos() + (prompt if isinstance(prompt, list) else self.encode(prompt))
        self._check_length(len(ids), limit)
        return ids

    def chat_prompt(self, messages: list[dict], limit: int) -> list[int]:
        """The conversation rendered with the model's chat template and a generation prompt.

        Raises:
            Refused: the model has no chat template, or the conversation is too long.
        """
        if not self.can_chat:
            what = (
                "a language model without a chat template (make one with `lmforge chat-tune`)"
                if self.family.promptable
                else f"a {self.family.name} model"
            )
            raise Refused(
                400,
                f"model {self.id!r} is {what}: it cannot chat; use "
                "/v1/completions" + ("" if self.can_complete else " or another model"),
            )
        if self.template is None:  # compiled once (a Jinja compile costs more than a reply step)
            self.template = ChatTemplate(self.tokenizer.chat_template)
        template = self.template
        ids = encode_text(self.tokenizer, template.render(messages, self.tokenizer, True))
        self._check_length(len(ids), limit)
        return ids

    def stop_ids(self, chat: bool) -> frozenset[int]:
        if self.counting:
            return frozenset({EOS_ID})
        stops = {self.tokenizer.eos_id}
        if chat or has_role_tokens(self.tokenizer):
            stops.add(self.tokenizer.token_to_id(END_OF_TURN))
        return frozenset(stops)

    def _check_length(self, n: int, limit: int) -> None:
        context = self.context_length
        if context is not None and n >= context:
            raise Refused(
                400,
                f"the prompt has {n} tokens; model {self.id!r} reads at most "
                f"{context} (prompt and reply together): shorten it",
                "context_length_exceeded",
            )
        if n > limit:
            raise Refused(
                400,
                f"the prompt has {n} tokens; this server takes at most {limit} "
                "(--max-prompt-tokens)",
                "context_length_exceeded",
            )

    def cannot(self, what: str, instead: str) -> str:
        return f"model {self.id!r} is a {self.family.name} model: it cannot {what}; use {instead}"

    # -- scoring, embedding, masks (run on a worker thread, one at a time per model) -----------

    def prompt_logprobs(self, ids: list[int], top: int) -> tuple[list[float], list[dict]]:
        """ln p of every prompt token after the ones before it (and ``<s>``), and the ``top``
        most likely tokens at each position ({piece: ln p}); for ``ids`` without ``<s>``."""
        with self.lock:
            if self.counting:
                return self._ngram_logprobs(ids, top)
            bos = self.bos()
            inputs = torch.tensor([bos + ids[:-1]])
            with torch.inference_mode():
                hidden_logits, _ = self.model(inputs)
                logp = hidden_logits[0].float().log_softmax(-1)  # (T, V)
            chosen = logp[torch.arange(len(ids)), torch.tensor(ids)].tolist()
            tops = []
            if top:
                best = logp.topk(min(top, logp.shape[-1]), dim=-1)
                for values, index in zip(best.values.tolist(), best.indices.tolist(), strict=True):
                    tops.append(dict(zip(self.pieces(index), values, strict=True)))
            return chosen, tops

    def _ngram_logprobs(self, ids: list[int], top: int) -> tuple[list[float], list[dict]]:
        words = [self.model.vocab[i] for i in ids]
        logp, _ = self.model.token_log_probs([words])  # the words, then </s>
        tops = []
        for i in range(len(words) if top else 0):
            scores = self.model.next_log_probs(words[:i])
            best = np.argsort(-scores, kind="stable")[:top]
            tops.append({self.model.vocab[j]: float(scores[j]) for j in best})
        return logp[: len(words)].tolist(), tops

    def embed(self, texts: list[str]) -> np.ndarray:
        if not self.can_embed:
            raise Refused(400, self.cannot("embed text", "a bert, MiniLM or elmo model"))
        with self.lock, torch.inference_mode():
            if self.family.name == "elmo":
                from lmforge.models.bert import l2_normalize

                rows = self.model.embed(texts, self.tokenizer)
                mean = torch.stack([r.mean(0) if len(r) else r.new_zeros(r.shape[1]) for r in rows])
                return l2_normalize(mean).numpy()
            from lmforge.hub.embed import embed

            return embed(self.model, self.tokenizer, texts)

    def fill_mask(self, text: str, top_k: int) -> list[list[tuple[str, float]]]:
        if not self.can_fill_mask:
            raise Refused(400, self.cannot("fill masks", "a bert model"))
        from lmforge.pretrain import fill_mask

        with self.lock, torch.inference_mode():
            return fill_mask(self.model, self.tokenizer, text, top_k)

    def translate(self, text: str, max_tokens: int) -> str:
        from lmforge.workflows import translate

        with self.lock, torch.inference_mode():
            return translate(self.model, self.tokenizer, [text], 1, max_tokens)[0]


PARTS = {"image": "image_url", "speech": "input_audio"}  # modality -> the content part


@dataclass(eq=False)
class ServedOmni:
    """One served omni folder: the model, and what ``/v1/models`` shows of it."""

    id: str
    folder: Path
    omni: Omni
    engine: None = None  # no batching engine: a reply is decoded whole, one at a time
    created: int = field(default_factory=lambda: int(time.time()))
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, name: str, folder: Path) -> ServedOmni:
        return cls(name, Path(folder), Omni.load(folder))

    @property
    def modalities(self) -> list[str]:
        return list(self.omni.tokenizers)

    def info(self) -> dict:
        takes = [m for m in PARTS if m in self.modalities]
        answered = {made for _, made in TASKS.values()}
        gives = [m for m in self.modalities if m in answered]
        capabilities = ["chat", *(f"{m}-input" for m in takes)]
        capabilities += ["image-output"] if set(gives) - {"speech"} else []
        capabilities += ["speech-output"] if "speech" in gives else []
        modules = [self.omni.decoder, *self.omni.tokenizers.values()]
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": "lmforge",
            "family": "omni",
            "summary": "any-to-any: one gpt over text and the codes of "
            + ", ".join(self.modalities),
            "parameters": sum(p.numel() for m in modules for p in m.parameters()),
            "parameters_kind": "weights",
            "corpus": None,
            "tokenizer": "chars + " + ", ".join(f"{m} codes" for m in self.modalities),
            "perplexity": None,
            "context_length": self.omni.decoder.config.max_seq_len,
            "capabilities": capabilities,
            "chat_template": False,
            "modalities": {"input": ["text", *takes], "output": ["text", *gives]},
        }

    def reply(
        self, messages: list[dict], n: int, max_tokens: int, text: Sampler, seed: int
    ) -> tuple[int, list[dict]]:
        """The prompt's length in tokens and ``n`` replies to the conversation, each
        ``reply_files``' dict with its length in tokens (on a worker thread, one at a time).

        Raises:
            Refused: an image or sound that does not decode, or a conversation too long.
        """
        with self.lock:
            turns = [self._turn(i, m) for i, m in enumerate(messages)]
            prompt = len(encode_conversation(self.omni.vocab, turns)[0]) + 1  # and <|assistant|>
            context = self.omni.decoder.config.max_seq_len
            if prompt >= context:
                raise Refused(
                    400,
                    f"the conversation is {prompt} tokens; model {self.id!r} reads at most "
                    f"{context}: start a new one, or drop its earlier turns",
                    "context_length_exceeded",
                )
            replies = self.omni.reply([turns] * n, max_tokens, text, None, seed)
            return prompt, [
                {**reply_files(self.omni, parts), "tokens": len(self.omni.vocab.content_ids(parts))}
                for parts in replies
            ]

    def _turn(self, i: int, message: dict) -> dict:
        if message["role"] != "user":
            return {"role": message["role"], "content": [message["content"]]}
        given = dict(message["media"])
        try:
            return user_turn(self.omni, message["content"], given.get("image"), given.get("speech"))
        except DataError as err:
            raise Refused(400, f"messages[{i}]: {err}", param=f"messages[{i}].content") from None


def recorded_perplexity(folder: Path, record: dict) -> float | None:
    """The folder's recorded perplexity: ``config.json``'s, else the last validation perplexity
    of its ``metrics.jsonl``; None if neither."""
    for key in ("perplexity", "test_ppl", "valid_ppl", "test_perplexity", "valid_perplexity"):
        if isinstance(record.get(key), int | float):
            return float(record[key])
    metrics = folder / "metrics.jsonl"
    if not metrics.is_file():
        return None
    found = None
    try:
        for line in metrics.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if "valid_ppl" in row:
                found = float(row["valid_ppl"])
    except (OSError, ValueError, TypeError):
        return None
    return found


# ---------------------------------------------------------------------------------------------
# The served set.


def parse_model_args(args: list[str], models_dir: str | None) -> list[tuple[str, Path]]:
    """(id, path) of each ``FOLDER`` or ``NAME=FOLDER``, then of each model folder in
    ``models_dir``.

    Raises:
        ConfigError: a bad or repeated id, or nothing to serve.
    """
    pairs = []
    for arg in args:
        name, sep, path = arg.partition("=")
        if not sep:
            name, path = _default_id(Path(arg)), arg
        pairs.append((name, Path(path)))
    if models_dir:
        pairs += [(_default_id(p), p) for p in find_folders(Path(models_dir))]
    if not pairs:
        raise ConfigError("nothing to serve: give model folders, or --models-dir DIR")
    seen = set()
    for name, path in pairs:
        if not _ID.match(name):
            raise ConfigError(
                f"{name!r} (for {path}) cannot be a model id: use letters, digits, '.', '_' and "
                "'-' (serve it as NAME=FOLDER)"
            )
        if name in seen:
            raise ConfigError(f"two models are called {name!r}; serve one as NAME=FOLDER")
        seen.add(name)
    return pairs


def _default_id(path: Path) -> str:
    """A folder's name; an ARPA file's name without ``.arpa``."""
    return path.stem if path.suffix == ".arpa" else path.resolve().name


def find_folders(root: Path) -> list[Path]:
    """The model folders directly under ``root`` (a ``config.json`` or an ``.arpa`` file),
    sorted by name."""
    if not root.is_dir():
        raise ConfigError(f"--models-dir {root}: no such folder")
    return sorted(
        p
        for p in root.iterdir()
        if (p.is_dir() and (p / CONFIG_FILE).is_file()) or (p.is_file() and p.suffix == ".arpa")
    )


class ModelSet:
    """The served models by id, each loaded once; a generating model gets an ``Engine``."""

    def __init__(
        self,
        pairs: list[tuple[str, str | os.PathLike]],
        max_batch: int = 32,
        max_waiting: int = 256,
    ) -> None:
        self.models: dict[str, ServedModel | ServedOmni] = {}
        for name, path in pairs:
            if is_omni_folder(path):
                self.models[name] = ServedOmni.load(name, Path(path))
                continue
            model, tokenizer, record = load_model(path)
            if record.get("task") is not None:
                raise ConfigError(
                    f"{path} holds a fine-tuned {record['task']} classifier; lmforge serve serves "
                    "language models, encoders and chat models: serve the folder it was tuned from"
                )
            served = ServedModel(name, Path(path), model, tokenizer, record)
            if served.can_complete:
                decoder = decoder_for(model, served.family, max_batch)
                served.engine = Engine(decoder, max_batch, max_waiting)
            self.models[name] = served

    def get(self, name: object, omni: bool = False) -> ServedModel | ServedOmni:
        """The served model called ``name`` (an any-to-any one only where ``omni``: the chat
        route).

        Raises:
            Refused: 404 for any other name (a path is just an unknown name); 400 for an
                any-to-any model where ``omni`` is False.
        """
        if isinstance(name, str) and name in self.models:
            served = self.models[name]
            if not omni and not isinstance(served, ServedModel):
                raise Refused(
                    400,
                    f"model {name!r} is an any-to-any (omni) model: it answers "
                    "POST /v1/chat/completions only",
                    param="model",
                )
            return served
        shown = name if isinstance(name, str) and len(name) <= 80 else "that model"
        raise Refused(
            404,
            f"the model {shown!r} is not served here; GET /v1/models lists the "
            f"served ones ({', '.join(self.models)})",
            "model_not_found",
        )

    def close(self) -> None:
        for served in self.models.values():
            if served.engine is not None:
                served.engine.close()
