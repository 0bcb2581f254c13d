"""Chat tuning: a causal LM turned into an assistant on dialogues, with the one Trainer.

``chat_tune`` adds the role tokens to the tokenizer (``lmforge.tokenize.chat``), grows the model's
vocabulary rows to fit (``grow_vocab``: new rows start as the mean of the old ones) and, if asked,
gives a gpt a copy head (``GPTConfig.copy_dim``: reading a line back out of the conversation is
then one attention; ``copy_skip``: marks it may not copy), and trains
on ``lmforge.train.tasks.ChatTask``: the loss counts the assistant's tokens only. Full tuning
trains every weight; LoRA (Hu et al. 2021, through ``peft`` as ``lmforge.vertical`` uses it)
trains rank-r adapters of every block's attention and MLP projections plus the token embeddings
(the new role tokens must be learnt), and merges the adapters into the saved weights, so a
tuned folder is a plain model folder either way.

``default_chat_model`` makes the default chat model in one call: a small GPT pretrained on the
built-in tang corpus (kept in ``runs/chat/base-gpt-tang-rope`` and reused), tuned on tang-chat.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from lmforge.chat.session import chat_family
from lmforge.checkpoint import CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE, start_run
from lmforge.config import build_config, config_to_dict
from lmforge.data import load_corpus
from lmforge.data.tang_chat import build_dialogues, fixed_texts
from lmforge.errors import ConfigError, LMForgeError
from lmforge.folders import load_model, read_record, save_weights, write_record
from lmforge.lock import folder_lock
from lmforge.models import family_of
from lmforge.tokenize import (
    DEFAULT_CHAT_TEMPLATE,
    UNK,
    ChatTemplate,
    Tokenizer,
    load_tokenizer,
    train_tokenizer,
    with_role_tokens,
)
from lmforge.train.config import TrainConfig, TrainResult
from lmforge.train.tasks import ChatTask
from lmforge.train.trainer import Trainer
from lmforge.vertical import about_minutes
from lmforge.workflows import train_family

__all__ = [
    "CHAT_TRAIN",
    "DEFAULT_CHAT",
    "ChatTuning",
    "chat_settings",
    "chat_tune",
    "default_chat_model",
    "grow_vocab",
]

# Trainer settings of chat tuning that differ from TrainConfig's defaults (--set overrides).
CHAT_TRAIN = {
    "batch_size": 16,
    "max_steps": 1000,
    "lr": 5e-4,
    "min_lr": 5e-5,
    "warmup_steps": 50,
    "eval_interval": 250,
}

# The default chat model (``default_chat_model``): a small GPT with rotary positions on tang's
# characters, pretrained on the poems (500 x 16 x 256 tokens: about one epoch; rotary positions
# reach validation perplexity 197 to 214 there where learned ones reach 333), then tuned on
# tang-chat (about 1,285,000 tokens an epoch; 2,050 x 16 rows of 257: about 6.6 epochs, each of
# the 500 facts in some 90 dialogues), with a copy head given at tuning (``copy_dim``: without
# it the tuned model wrote back 0 of 197 held-out line questions, with it about half, and more
# with more reading dialogues; RESULTS.md, 2026-12-06) that copies no quotation marks
# (``copy_skip``: copying the 》 after a requested title's last character ended a quatrain's
# line there, a few in a hundred quatrains). The speeds are a 2-core CPU's training
# tokens/s for this model (pretraining 8.5 minutes on a quiet 2026-12-05; tuning 15.5 then, 17
# with the copy head on 2026-12-06, 20 to 22 with the quoting answers and 1,950 steps later that
# day, 21.8 with the asides on 2026-12-07, 20.8 with 2,050 steps and more quatrains later that
# day on a busier machine: the tuning reads the output layer at the assistant's tokens only);
# the time estimate divides the training tokens by them.
DEFAULT_CHAT = {
    "folder": "runs/chat/base-gpt-tang-rope",
    "corpus": "tang",
    "tokenizer": "char",
    "model": {
        "d_model": 192,
        "n_layers": 4,
        "n_heads": 6,
        "d_ff": 768,
        "max_seq_len": 256,
        "dropout": 0.0,
        "positions": "rotary",
    },
    "train": {
        "batch_size": 16,
        "seq_len": 256,
        "max_steps": 500,
        "lr": 1e-3,
        "min_lr": 1e-4,
        "warmup_steps": 50,
        "eval_interval": 200,
        "eval_tokens": 20_000,
    },
    # With --lora: rank 64 (a third of d_model) came within 5 points of full tuning's mean on
    # every kind but quatrains (-5.3) over three seeds, where rank 16 fell 10-14 points short on
    # four kinds (RESULTS.md, 2026-12-06).
    "tune": {
        **CHAT_TRAIN,
        "max_steps": 2050,  # the epochs of 1,950 before 1,200 more quatrain dialogues
        "lr": 2e-3,
        "min_lr": 2e-4,
        "copy_dim": 64,
        "copy_skip": "《》「」",
        "lora_r": 64,
        "lora_alpha": 128,
    },
    "tokens_per_second": {"pretrain": 4_900, "tune": 6_700},
}


@dataclass(frozen=True)
class ChatTuning:
    """How ``chat_tune`` tunes, beside the Trainer's settings.

    Args:
        lora: train LoRA adapters (merged at the end) instead of every weight.
        lora_r: the adapters' rank.
        lora_alpha: their scale numerator (the update is alpha / r * B A).
        chat_template: the Jinja chat template the folder carries.
        copy_dim: give a gpt without one a copy head of this width (0: none), trained from
            fresh weights with the rest (``GPTConfig.copy_dim``).
        copy_skip: characters the copy head never copies (``GPTConfig.copy_skip``), for a model
            with a copy head; each must be a token of the tokenizer.
    """

    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    chat_template: str = DEFAULT_CHAT_TEMPLATE
    copy_dim: int = 0
    copy_skip: str = ""

    def __post_init__(self) -> None:
        for name, least in (("lora_r", 1), ("lora_alpha", 1), ("copy_dim", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}")
        if not isinstance(self.copy_skip, str):
            raise ConfigError(f"copy_skip must be a string of characters, got {self.copy_skip!r}")
        ChatTemplate(self.chat_template)  # a template that does not compile fails here


def chat_settings(sets: dict, lora: bool = False, defaults: dict = CHAT_TRAIN):
    """(TrainConfig, ChatTuning) from ``--set`` values over ``defaults``: trainer settings and
    ``lora_r`` / ``lora_alpha`` / ``chat_template`` / ``copy_dim`` / ``copy_skip``.

    Raises:
        ConfigError: an unknown key, listing the valid ones.
    """
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    tune_keys = {f.name for f in dataclasses.fields(ChatTuning)} - {"lora"}
    unknown = sorted(set(sets) - train_keys - tune_keys)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)}; chat-tune takes the trainer's "
            f"{', '.join(sorted(train_keys))} and {', '.join(sorted(tune_keys))}"
        )
    merged = {**defaults, **sets}
    train = {k: v for k, v in merged.items() if k in train_keys}
    tune = {k: v for k, v in merged.items() if k in tune_keys}
    return build_config(TrainConfig, train, {}), build_config(ChatTuning, {"lora": lora}, tune)


def grow_vocab(
    model: torch.nn.Module, vocab_size: int, copy_dim: int = 0, copy_skip: tuple[int, ...] = ()
) -> torch.nn.Module:
    """``model`` with ``vocab_size`` token rows: the old rows unchanged, each new row of every
    vocabulary-sized tensor (embedding, output layer and its bias) the mean of the old rows;
    for ``copy_dim`` > 0, a gpt without a copy head given a fresh one of that width; and a copy
    head's ``copy_skip`` set (ignored without one). ``model`` itself when there is nothing to
    change.

    Raises:
        ConfigError: a smaller vocabulary, an adaptive softmax (its clusters cannot grow), a
            copy head for another family than gpt, or one of another width than the model's.
    """
    config = model.config
    changes = {"vocab_size": vocab_size}
    had = getattr(config, "copy_dim", None)
    if copy_dim and had != copy_dim:
        if had is None or had:
            raise ConfigError(
                f"cannot give this {family_of(model).name} model a copy head of width "
                f"{copy_dim}: " + ("only a gpt has one" if had is None else f"it has one of {had}")
            )
        changes["copy_dim"] = copy_dim
    if (copy_dim or getattr(config, "copy_dim", 0)) and tuple(copy_skip) != config.copy_skip:
        changes["copy_skip"] = tuple(copy_skip)
    if changes == {"vocab_size": config.vocab_size}:
        return model
    adaptive = getattr(config, "adaptive_cutoffs", ())
    if vocab_size < config.vocab_size or (vocab_size > config.vocab_size and adaptive):
        raise ConfigError(
            f"cannot grow a model of {config.vocab_size} tokens (adaptive_cutoffs {adaptive}) "
            f"to {vocab_size}; tune a model with a full softmax"
        )
    grown = family_of(model).model_class(dataclasses.replace(config, **changes))
    state = grown.state_dict()  # a new copy head keeps its fresh weights
    for name, old in model.state_dict().items():
        if old.shape != state[name].shape:  # (V, ...) -> (vocab_size, ...)
            mean = old.mean(dim=0, keepdim=True)
            old = torch.cat([old, mean.expand(vocab_size - old.shape[0], *old.shape[1:])])
        state[name] = old
    grown.load_state_dict(state)
    return grown.train(model.training)


def chat_tune(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    dialogues: Sequence[Sequence[dict]],
    train_config: TrainConfig,
    tuning: ChatTuning = ChatTuning(),
    out_dir: str | os.PathLike | None = None,
    valid: Sequence[Sequence[dict]] | None = None,
    record: dict | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[torch.nn.Module, Tokenizer, TrainResult]:
    """Tune a causal LM on conversations (``messages`` lists ending with an assistant turn).

    Args:
        model, tokenizer: the base; the tokenizer gains the role tokens, the model rows for them.
        dialogues: training conversations; valid: held-out ones (None: no evaluation, the last
            weights are kept; else the best on them).
        train_config: the Trainer's settings; tuning: LoRA or full, and the template.
        out_dir: the chat model folder to write (``config.json`` records the tokenizer's
            ``chat_template``, ``train_config``, ``chat_tuning`` and ``record``), or None.
        overwrite: replace the run or model that ``out_dir`` holds.

    Returns:
        (the tuned model, its tokenizer with ``chat_template`` set, TrainResult).

    Raises:
        ConfigError: a model that cannot chat (``chat_family``), or LoRA for another family
            than gpt.
        CheckpointError: ``out_dir`` holds another run (and not ``overwrite``), or another
            process writes it.
    """
    family = chat_family(model)
    if tuning.lora and family != "gpt":
        raise ConfigError(f"LoRA adapts a gpt's blocks; tune this {family} model without --lora")
    tokenizer = with_role_tokens(tokenizer)
    tokenizer.chat_template = tuning.chat_template
    torch.manual_seed(train_config.seed)  # LoRA's initial adapters come from the run's seed
    model = grow_vocab(model, tokenizer.vocab_size, tuning.copy_dim, _token_ids(tokenizer, tuning))
    template = ChatTemplate(tuning.chat_template)
    task = ChatTask(
        model, tokenizer, template, dialogues, valid, train_config.batch_size, train_config.seed
    )
    with folder_lock(out_dir) if out_dir else nullcontext():
        if out_dir:
            start_run(out_dir, overwrite)
        trained = _with_lora(model, tuning) if tuning.lora else model
        trainer = Trainer(trained, train_config, progress=progress, task=task)
        result = trainer.fit()
        model = trained.merge_and_unload() if tuning.lora else trained
        model.eval()
        if out_dir:
            save_weights(Path(out_dir) / WEIGHTS_FILE, model.state_dict())
            write_record(
                out_dir,
                family,
                model.config,
                tokenizer,
                train_config=config_to_dict(train_config),
                chat_tuning={
                    "lora": tuning.lora,
                    "lora_r": tuning.lora_r,
                    "lora_alpha": tuning.lora_alpha,
                    "copy_dim": tuning.copy_dim,
                    "copy_skip": tuning.copy_skip,
                },
                **(record or {}),
            )
    return model, tokenizer, result


def _token_ids(tokenizer: Tokenizer, tuning: ChatTuning) -> tuple[int, ...]:
    """The ids of ``tuning.copy_skip``'s characters.

    Raises:
        ConfigError: a character that is not a token of ``tokenizer``.
    """
    missing = [c for c in tuning.copy_skip if c not in tokenizer.vocab]
    if missing:
        raise ConfigError(
            f"copy_skip: {''.join(missing)!r} not in this tokenizer's vocabulary; give only "
            "characters that are tokens (or copy_skip='')"
        )
    return tuple(tokenizer.token_to_id(c) for c in tuning.copy_skip)


def _with_lora(model: torch.nn.Module, tuning: ChatTuning):
    """``model`` as a peft model: LoRA adapters on the block projections, the token embeddings
    trainable too (the new role tokens' rows must be learnt; a tied output layer shares them),
    and a copy head, which is small, trained whole."""
    from lmforge.vertical.recipes import lora_model

    lora = lora_model(model, tuning.lora_r, tuning.lora_alpha)
    base = lora.get_base_model()
    base.tok_emb.weight.requires_grad_(True)
    if getattr(base, "copy", None) is not None:
        base.copy.requires_grad_(True)
    return lora


# ---------------------------------------------------------------------------------------------
# The default chat model.


def default_chat_model(
    out_dir: str | os.PathLike,
    sets: dict | None = None,
    lora: bool = False,
    say: Callable[[str], None] = print,
    overwrite: bool = False,
    progress: bool = True,
    dialogues: Sequence[Sequence[dict]] | None = None,
) -> tuple[torch.nn.Module, Tokenizer, TrainResult]:
    """The default chat model: ``DEFAULT_CHAT``'s GPT pretrained on tang (kept in its folder and
    reused), tuned on ``dialogues`` (default: tang-chat's training dialogues) into ``out_dir``;
    ``sets`` change the tuning's settings (``chat_settings``). Says at the start how long it
    will take."""
    spec = DEFAULT_CHAT
    name = "tang-chat" if dialogues is None else "given"
    if dialogues is None:
        dialogues = [d["messages"] for d in build_dialogues("train")]
    train_config, tuning = chat_settings(sets or {}, lora, spec["tune"])
    base = Path(spec["folder"])
    kept = _kept_base(base)
    pretrain = spec["train"]
    speed = spec["tokens_per_second"]
    tokens = train_config.max_steps * train_config.batch_size * (spec["model"]["max_seq_len"] + 1)
    seconds = tokens / speed["tune"]
    if not kept:
        tokens = pretrain["max_steps"] * pretrain["batch_size"] * pretrain["seq_len"]
        seconds += tokens / speed["pretrain"]
    minutes = seconds / 60
    size = f"{spec['model']['n_layers']} x {spec['model']['d_model']}"
    say(
        f"default chat model: {'a kept' if kept else 'pretraining a'} gpt ({size}) on tang in "
        f"{base}, tuned {'with LoRA ' if lora else ''}on {name} ({len(dialogues):,} "
        f"dialogues, {train_config.max_steps} steps); {about_minutes(minutes)} on a 2-core CPU"
    )
    if not kept:
        _pretrain_base(base, progress)
    model, tokenizer, _ = load_model(base)
    record = {"base": str(base), "dialogues": name}
    return chat_tune(
        model,
        tokenizer,
        dialogues,
        train_config,
        tuning,
        out_dir,
        record=record,
        overwrite=overwrite,
        progress=progress,
    )


def _kept_base(folder: Path) -> bool:
    """Whether ``folder`` holds a base of ``DEFAULT_CHAT``'s recipe: its model settings, and a
    tokenizer that knows every character of tang-chat's training questions and answers (a base
    made before the phrasings changed lacks the new ones). Any other base, an older default's,
    is made again."""
    if not ((folder / WEIGHTS_FILE).exists() and (folder / CONFIG_FILE).exists()):
        return False
    recorded = read_record(folder).get("config", {})
    if any(recorded.get(key) != value for key, value in DEFAULT_CHAT["model"].items()):
        return False
    try:
        tokenizer = load_tokenizer(folder / TOKENIZER_FILE)
    except LMForgeError:
        return False
    return UNK not in {t for text in fixed_texts("train") for t in tokenizer.tokens(text)}


def _pretrain_base(folder: Path, progress: bool = True) -> None:
    """Pretrain ``DEFAULT_CHAT``'s GPT on tang into ``folder`` (through a ``.partial`` folder,
    renamed when finished). Its char tokenizer also learns the characters of tang-chat's
    training dialogues (punctuation such as 《》 and the English questions' letters are not in
    the poems)."""
    spec = DEFAULT_CHAT
    corpus = load_corpus(spec["corpus"])
    chats = [d["messages"] for d in build_dialogues("train")]
    texts = [*corpus.train, *(m["content"] for d in chats for m in d)]
    tokenizer = train_tokenizer(spec["tokenizer"], texts)
    partial = folder.with_name(folder.name + ".partial")
    train_family(
        "gpt",
        corpus.train,
        corpus.valid,
        tokenizer,
        spec["model"],
        TrainConfig(**spec["train"]),
        partial,
        progress=progress,
        overwrite=True,
    )
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
