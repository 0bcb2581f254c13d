"""``lmforge omni train``: the AnyGPT recipe end to end, small.

1. Each modality's tokenizer is trained on its own training items (and their perturbed copies,
   ``OmniConfig.augment``) and frozen (a folder that holds one already keeps it).
2. The shared vocabulary is laid out (``lmforge.omni.vocab``) and every training item encoded.
3. Conversations are drawn from the templates (``lmforge.omni.tasks``): every task in both
   directions, the cross-modal pairs and the chains, in equal shares. The items given to the
   model include the perturbed copies; its answers are real items.
4. lmforge's GPT is trained on them with the one Trainer (``ChatTask``: the loss counts the
   assistant's turns only, unless ``OmniConfig.given_loss`` names modalities whose given items
   count too), and the folder written (``Omni.save``).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lmforge.config import build_config, config_to_dict
from lmforge.errors import CheckpointError, ConfigError
from lmforge.folders import CONFIG_FILE
from lmforge.lock import folder_lock
from lmforge.models import get_family
from lmforge.omni.image import bigger_images
from lmforge.omni.items import Items
from lmforge.omni.modalities import MODALITIES, get_modality
from lmforge.omni.model import KIND, Omni
from lmforge.omni.tasks import (
    TASKS,
    Bank,
    chain_conversation,
    conversation,
    item_names,
    template_texts,
)
from lmforge.omni.vocab import OmniVocab, encode_conversation
from lmforge.tokenize import train_tokenizer, with_role_tokens
from lmforge.train.config import TrainConfig
from lmforge.train.tasks import ChatTask
from lmforge.train.trainer import Trainer
from lmforge.vertical import about_minutes
from lmforge.workflows import build_model

__all__ = [
    "AUGMENT",
    "DECODER",
    "WEIGHTS",
    "NoisyCodes",
    "OmniConfig",
    "banks_of",
    "settings",
    "tasks_of",
    "train_omni",
]


# The decoder's gpt settings (``OmniConfig.decoder`` overrides any of them).
DECODER = {
    "d_model": 256,
    "n_layers": 4,
    "n_heads": 8,
    "d_ff": 1024,
    "max_seq_len": 256,
    "dropout": 0.0,
    "positions": "rotary",
}

# Perturbed copies of each training item the decoder reads (``OmniConfig.augment``).
AUGMENT = {"image": 4, "speech": 3}
# Tasks drawn more often than the rest (``OmniConfig.weights``): with equal shares the model
# drew digits the judge named 0.75 of the time; with these (and 4,000 steps), 0.975
# (benchmarks/RESULTS.md).
WEIGHTS = {"text->image": 4, "image->text": 3, "video->text": 2}
TEXT_TOKENIZERS = ("bpe", "char")  # OmniConfig.text_tokenizer


@dataclass(frozen=True)
class OmniConfig:
    """The modalities, the decoder and its training (``--set`` overrides any field).

    The default, on a 2-core CPU: a 4 x 256 GPT with 256 rotary positions (``DECODER``), 4,000
    steps of 16 packed rows (about 16 million tokens, some 2 passes over the conversations),
    about 48 minutes with the tokenizers.

    Attributes:
        tokenizers: modality -> its tokenizer's settings (``{"image": {"steps": 500}}``).
        augment: modality -> perturbed copies of each training item (``Modality.augment``)
            that the tokenizer and the decoder read besides the item.
        decoder: gpt settings over ``DECODER`` (``{"n_layers": 2}``).
        per_task: conversations drawn per task.
        weights: task -> a multiple of ``per_task`` for it (``WEIGHTS``; 1 unless named), so
            that the steps are shared unequally.
        text_tokenizer: how the text is split: "bpe" (a word a token, as the templates and
            labels use them; the default) or "char" (the first versions': "on" and "one" then
            differ by a letter only, and speech for short words was drawn wrong).
        noise: modality -> the share of its codes that the decoder only reads (not the ones
            it learns to write) replaced, each step, by codes of the modality drawn at random
            (``NoisyCodes``; ``{"speech": 0.15}``), so that it cannot lean on a few exact codes
            of a word; none by default.
        tokens_per_second: the training speed the time estimate divides by (2-core CPU).
        given_loss: modalities whose real items in the user's turns count in the loss too
            (as AnyGPT's pre-training counts every token), so that the decoder models them as
            well as reads them (``("speech",)``); the perturbed copies are only read. None by
            default. An earlier form that counted the copies too heard the unseen voices
            better but spoke worse (benchmarks/RESULTS.md, ninth run).
        named_cross: a cross-modal answer first names the digit it heard or read, then
            draws or says it ("seven", then the drawing). The word is text, chosen from the
            mean over the readings of a given word's views (``Omni.reply``), and the drawing
            follows the word. False: the item alone, as models before 2026-12-07 answered.
    """

    modalities: tuple[str, ...] = tuple(MODALITIES)
    tokenizers: dict = field(default_factory=dict)
    augment: dict = field(default_factory=lambda: dict(AUGMENT))
    weights: dict = field(default_factory=lambda: dict(WEIGHTS))
    decoder: dict = field(default_factory=dict)
    per_task: int = 10000
    steps: int = 4000
    batch_size: int = 16
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    seed: int = 0
    text_tokenizer: str = "bpe"
    noise: dict = field(default_factory=dict)
    tokens_per_second: float = 6000.0
    given_loss: tuple[str, ...] = ()
    named_cross: bool = True

    def __post_init__(self) -> None:
        for name in ("modalities", "given_loss"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in (*self.modalities, *self.given_loss):
            get_modality(name)
        for name, copies in self.augment.items():
            get_modality(name)
            if isinstance(copies, bool) or not isinstance(copies, int) or not 0 <= copies <= 16:
                raise ConfigError(
                    f'augment maps a modality to 0..16 copies (e.g. {{"image": 4}}); '
                    f"got {name!r}: {copies!r}"
                )
        known = [*TASKS, "chain"]
        for task, weight in self.weights.items():
            if task not in known or isinstance(weight, bool) or not isinstance(weight, int | float):
                raise ConfigError(
                    f"weights maps a task of {known} to a multiple of per_task "
                    f'(e.g. {{"text->image": 2}}); got {task!r}: {weight!r}'
                )
            if not 0 <= weight <= 10:
                raise ConfigError(f"weights[{task!r}] must be in 0..10, got {weight!r}")
        for name, sets in self.tokenizers.items():
            if name not in self.modalities or not isinstance(sets, dict):
                raise ConfigError(
                    f"tokenizers maps a modality of {list(self.modalities)} to its settings "
                    f'(e.g. {{"image": {{"steps": 500}}}}); got {name!r}: {sets!r}'
                )
        for name, share in self.noise.items():
            is_share = isinstance(share, int | float) and not isinstance(share, bool)
            if name not in self.modalities or not (is_share and 0 <= share < 1):
                raise ConfigError(
                    f"noise maps a modality of {list(self.modalities)} to a share in [0, 1) "
                    f'(e.g. {{"speech": 0.15}}); got {name!r}: {share!r}'
                )
        if self.text_tokenizer not in TEXT_TOKENIZERS:
            raise ConfigError(
                f"text_tokenizer must be one of {TEXT_TOKENIZERS}, got {self.text_tokenizer!r}"
            )
        build_config(get_family("gpt").config_class, {**self.gpt, "vocab_size": 2}, {})
        if "image" not in self.modalities:
            raise ConfigError("modalities must include image (every chain starts from one)")
        if not isinstance(self.named_cross, bool):
            raise ConfigError(f"named_cross must be true or false, got {self.named_cross!r}")
        for name in ("per_task", "steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")

    @property
    def gpt(self) -> dict:
        """The decoder's gpt settings: ``DECODER`` with ``decoder`` over it."""
        return {**DECODER, **self.decoder}


def tasks_of(modalities) -> list[str]:
    """The tasks whose modalities are all present, and "chain" when image and speech are."""
    present = {"text", *modalities}
    tasks = [t for t, pair in TASKS.items() if set(pair) <= present]
    return tasks + (["chain"] if {"image", "speech"} <= present else [])


def banks_of(
    tokenizers: dict, items: dict[str, Items], real: dict | None = None, views: dict | None = None
):
    """Each modality's items encoded (``real``: modality -> how many leading items are real,
    the rest perturbed copies; ``views``: modality -> the items' other views, ``Modality.views``,
    whose codes the items then carry, as ``Omni.encode`` gives them); the digits also drawn
    bigger (the chains' third turn)."""
    real, views = real or {}, views or {}
    banks = {}
    for m, tokenizer in tokenizers.items():
        banks[m] = Bank(
            m,
            tokenizer.encode(items[m].x),
            item_names(m, items[m]),
            real=real.get(m),
            views=tuple(tokenizer.encode(v) for v in views.get(m, ())),
        )
    if "image" in banks:
        banks["image"].bigger = tokenizers["image"].encode(bigger_images(items["image"].x))
    return banks


def draw(
    tasks, banks, count: int, seed: int, weights: dict | None = None, named: bool = True
) -> list[list[dict]]:
    """``count`` conversations of each task (times its weight, 1 unless ``weights`` says),
    drawn with a seeded generator (``named``: ``conversation``'s)."""
    rng = random.Random(seed)
    out = []
    for task in tasks:
        for _ in range(round(count * (weights or {}).get(task, 1))):
            if task == "chain":
                out.append(chain_conversation(banks, rng)[0])
            else:
                out.append(conversation(task, banks, rng, named=named)[0])
    return out


def train_omni(
    out_dir: str | os.PathLike,
    config: OmniConfig = OmniConfig(),
    say: Callable[[str], None] = print,
    progress: bool = True,
) -> Omni:
    """Train the tokenizers that ``out_dir`` does not keep, then the decoder; write the folder.

    Raises:
        CheckpointError: ``out_dir`` holds something that is not an omni model.
    """
    out = Path(out_dir)
    if (out / CONFIG_FILE).exists() and not _is_omni(out):
        raise CheckpointError(f"{out} holds another kind of folder; give a new --out")
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        start = time.time()
        kept = {m for m in config.modalities if (out / m / CONFIG_FILE).exists()}
        tasks = tasks_of(config.modalities)
        gpt = config.gpt
        decoder_tokens = config.steps * config.batch_size * (gpt["max_seq_len"] + 1)
        minutes = (
            decoder_tokens / config.tokens_per_second + 90 * (len(config.modalities) - len(kept))
        ) / 60
        say(
            f"omni: {len(config.modalities)} tokenizers ({len(kept)} kept), then a "
            f"{gpt['n_layers']} x {gpt['d_model']} gpt on {len(tasks)} tasks, {config.steps} "
            f"steps; {about_minutes(minutes)} on a 2-core CPU"
        )
        tokenizers, train_items, augmented = {}, {}, {}
        bases_first = sorted(config.modalities, key=lambda m: MODALITIES[m].base is not None)
        for i, name in enumerate(bases_first, 1):
            modality = MODALITIES[name]
            train_items[name] = modality.load("train", seed=config.seed)
            copies = config.augment.get(name, 0) if modality.augmenter else 0
            if copies:
                say(f"1/3 {name}: {copies} perturbed copies of each training item")
            augmented[name] = modality.augment(train_items[name], copies, seed=config.seed)
            if name in kept:
                say(f"1/3 tokenizer {i}/{len(config.modalities)}: {name} (kept)")
                tokenizers[name] = modality.tokenizer_class().load(out / name)
            else:
                say(f"1/3 tokenizer {i}/{len(config.modalities)}: making the {name} tokenizer")
                settings = build_config(
                    modality.config_class(), config.tokenizers.get(name, {}), {}
                )
                threads = torch.get_num_threads()
                torch.set_num_threads(1)  # small convolutions: a second thread only waits
                try:
                    tokenizers[name] = modality.train_tokenizer(
                        augmented[name].x,
                        settings,
                        seed=config.seed,
                        progress=progress,
                        base=tokenizers.get(modality.base),
                    )
                finally:
                    torch.set_num_threads(threads)
                tokenizers[name].save(out / name)
        say("2/3 encoding the items and drawing the conversations")
        vocab = _vocab(tokenizers, train_items, config.text_tokenizer)
        banks = banks_of(tokenizers, augmented, {m: len(its) for m, its in train_items.items()})
        rows = [
            encode_conversation(vocab, m, config.given_loss)
            for m in draw(
                tasks, banks, config.per_task, config.seed, config.weights, config.named_cross
            )
        ]
        say(f"3/3 training the decoder on {len(rows):,} conversations")
        decoder = _train_decoder(vocab, rows, config, progress)
        record = {"config": config_to_dict(config), "seconds": round(time.time() - start, 1)}
        omni = Omni(decoder.eval(), vocab, tokenizers, record)
        omni.save(out, locked=True)
    say(f"omni model written to {out} in {about_minutes((time.time() - start) / 60)}")
    return omni


def _vocab(
    tokenizers: dict, items: dict[str, Items], kind: str = OmniConfig.text_tokenizer
) -> OmniVocab:
    names = sorted({n for m, its in items.items() for n in item_names(m, its)})
    # bpe on these few lines learns every word whole (about 400 tokens); 1,000 is a bound
    text = with_role_tokens(train_tokenizer(kind, [*template_texts(), *names], vocab_size=1000))
    sizes = {m: (t.codebook_size, t.tokens_per_item) for m, t in tokenizers.items()}
    frames = {
        m: t.frames for m, t in tokenizers.items() if isinstance(getattr(t, "frames", None), int)
    }
    shared = {}
    for m, t in tokenizers.items():
        lender = getattr(t, "shared", None)  # ("image", K): its first K codes are the image's
        if lender and lender[0] in tokenizers and _same_net(t, tokenizers[lender[0]]):
            shared[m] = lender
    return OmniVocab(text, sizes, frames, shared)


def _same_net(a, b) -> bool:
    """Whether two tokenizers hold the same VQ-VAE (a kept video folder may have been built on
    an image tokenizer that has since been trained again)."""
    one, two = a.net.state_dict(), b.net.state_dict()
    return one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)


def _train_decoder(vocab: OmniVocab, rows, config: OmniConfig, progress: bool):
    torch.manual_seed(config.seed)
    model, _ = build_model("gpt", vocab.vocab_size, config.gpt)
    task = ChatTask.from_rows(model, rows, None, vocab.text.pad_id, config.batch_size, config.seed)
    if any(config.noise.values()):
        shares = [(vocab.allowed(m), share) for m, share in config.noise.items() if share]
        task = NoisyCodes(task, shares, config.seed)
    train = TrainConfig(
        batch_size=config.batch_size,
        seq_len=config.gpt["max_seq_len"],
        max_steps=config.steps,
        lr=config.lr,
        min_lr=config.min_lr,
        warmup_steps=config.warmup_steps,
        eval_interval=config.steps,
        seed=config.seed,
    )
    Trainer(model, train, progress=progress, task=task).fit()
    return model


class NoisyCodes:
    """A ChatTask whose batches have a share of some modalities' read-only codes replaced.

    A code is read-only where the loss does not ask for it (the item the user gives); the codes
    the decoder learns to write, and its targets, stay as they are. Each code of a modality is
    replaced with probability ``share`` by one of the modality's codes drawn uniformly: token
    noise as in BERT's random replacement (Devlin et al. 2019), here so that a word in an unseen
    voice, whose codes differ from the training voices' in places, is still read from the rest.
    Seeded by ``seed`` and the step.

    Args:
        task: the ChatTask (batches of inputs, targets, weights).
        shares: (a modality's token ids, its share) pairs.
        seed: the draws' seed.
    """

    def __init__(self, task: ChatTask, shares: list[tuple[list[int], float]], seed: int) -> None:
        self.task, self.seed = task, seed
        self.shares = [(torch.tensor(ids), share) for ids, share in shares]

    def batch(self, step: int):
        (inputs, targets, weights), reset = self.task.batch(step)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        read_only = torch.ones_like(inputs, dtype=torch.bool)
        read_only[:, 1:] = weights[:, :-1] == 0  # inputs[t] was not a target at t - 1
        inputs = inputs.clone()
        for ids, share in self.shares:
            draw = torch.rand(inputs.shape, generator=generator) < share
            hit = torch.isin(inputs, ids) & read_only & draw
            inputs[hit] = ids[torch.randint(len(ids), (int(hit.sum()),), generator=generator)]
        return (inputs, targets, weights), reset

    def loss(self, model, batch, state=None):
        return self.task.loss(model, batch, state)

    def tokens(self, batch) -> int:
        return self.task.tokens(batch)

    def evaluate(self, model, max_tokens: int = 0):
        return self.task.evaluate(model, max_tokens)


def _is_omni(folder: Path) -> bool:
    from lmforge.folders import read_record

    return read_record(folder).get("kind") == KIND


def settings(sets: dict) -> OmniConfig:
    """An ``OmniConfig`` from ``--set`` values.

    Raises:
        ConfigError: an unknown key (listing the valid ones) or a bad value.
    """
    return build_config(OmniConfig, sets, {})
