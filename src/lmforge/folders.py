"""The one owner of model folders: what a folder holds is decided here, once.

A model folder holds ``config.json`` (the record: ``family``, ``version``, the model ``config``
and what the writer adds, such as ``train_config``, ``corpus``, a classifier's ``task`` and
``labels``, or the heads an import left random, ``fresh_heads``), the weights
(``model.safetensors``, or ``model.arpa`` for a counted family) and ``tokenizer.json``.

* ``save_model(folder, model, tokenizer, **record)`` writes any registered family or a
  fine-tuned classifier, every file atomically, ``config.json`` last.
* ``load_model(path)`` reads ``config.json`` once and returns the right object: any registered
  family (ARPA or safetensors, as the registry says), a fine-tuned classifier, an ARPA file, or a
  Hugging Face folder imported in memory.
* ``write_record`` starts a folder that the Trainer fills with weights as it trains.
* ``save_part(folder, kind, config, tensors)`` / ``load_part(folder, kind)`` write and read a
  part that is no registered family: a frozen modality tokenizer of the any-to-any model
  (``lmforge.omni``), a small judge; ``config.json`` names its ``kind``, and a folder of another
  kind is refused by name.

Every command, library call and the server load and save model folders through this module;
nothing else reads ``config.json`` to guess what a folder holds.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from lmforge._version import __version__
from lmforge.checkpoint import (
    ARPA_FILE,
    CONFIG_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    atomic_write_bytes,
    read_json,
    write_json,
)
from lmforge.config import build_config, config_to_dict
from lmforge.errors import CheckpointError, ConfigError, LMForgeError, UnknownModelError
from lmforge.lmb import is_binary
from lmforge.lock import folder_lock
from lmforge.models import family_of, get_family
from lmforge.tokenize import Tokenizer, load_tokenizer

if TYPE_CHECKING:  # torch is imported only where a neural model is saved or loaded
    import torch

__all__ = [
    "ARPA_FILE",
    "CONFIG_FILE",
    "TOKENIZER_FILE",
    "WEIGHTS_FILE",
    "load_model",
    "load_part",
    "read_record",
    "save_model",
    "save_part",
    "save_weights",
    "write_record",
]


def write_record(
    folder: str | os.PathLike,
    family_name: str,
    config,
    tokenizer: Tokenizer | None,
    **record,
) -> Path:
    """Write a folder's ``tokenizer.json`` (or remove a stale one) and ``config.json``: the
    family, the version, the model config, the tokenizer's ``chat_template`` if it has one and
    ``record`` (JSON values)."""
    out = Path(folder)
    if tokenizer is not None:
        tokenizer.save(out / TOKENIZER_FILE)
    else:
        (out / TOKENIZER_FILE).unlink(missing_ok=True)
    meta = {
        "family": family_name,
        "version": __version__,
        "config": config_to_dict(config),
        "tokenizer": tokenizer.kind if tokenizer is not None else None,
        **record,
    }
    if tokenizer is not None and tokenizer.chat_template:
        meta["chat_template"] = tokenizer.chat_template
    write_json(out / CONFIG_FILE, meta)
    return out


def save_weights(path: str | os.PathLike, tensors: dict[str, torch.Tensor]) -> None:
    """A state dict as safetensors, atomically; tied tensors are stored once per name."""
    from safetensors.torch import save as safetensors_bytes

    state = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    atomic_write_bytes(path, safetensors_bytes(state))


def save_model(
    folder: str | os.PathLike, model, tokenizer: Tokenizer | None = None, **record
) -> Path:
    """Write ``model`` as a model folder that ``load_model`` reads back.

    Args:
        folder: the folder to write (created if needed).
        model: a model of any registered family, or a classifier of ``lmforge.models.heads``
            (``record`` must then give its ``labels``).
        tokenizer: its tokenizer; None only for an n-gram model over whitespace words.
        record: more JSON fields for ``config.json`` (``corpus``, ``train_config``, ...).

    Raises:
        ConfigError: a model of no registered family, or a classifier without its labels.
        CheckpointError: another process writes ``folder`` (``lmforge.lock``).
    """
    out = Path(folder)
    task = _head_task(model)
    if task is not None:
        labels = record.get("labels")
        if not isinstance(labels, list) or len(labels) != model.n_labels:
            raise ConfigError(
                f"a classifier of {model.n_labels} classes is saved with its labels: give "
                f"labels=[...] ({model.n_labels} of them)"
            )
        record["task"] = task
        base = model.base
    else:
        base = model
    family = family_of(base)
    if family.fitting != "counting" and tokenizer is None:
        raise ConfigError(f"a {family.name} model folder needs its tokenizer")
    fresh = list(getattr(base, "fresh_heads", ()))
    if fresh:
        record.setdefault("fresh_heads", fresh)
    with folder_lock(out):  # one writer per folder
        if family.fitting == "counting":
            model.save_arpa(out / ARPA_FILE)
            record = {
                "vocab_size": model.vocab_size,
                "ngram_counts": model.ngram_counts,
                "discounts": [list(d) for d in model.discounts],
                **record,
            }
        else:
            save_weights(out / WEIGHTS_FILE, model.state_dict())
        return write_record(out, family.name, base.config, tokenizer, **record)


def save_part(
    folder: str | os.PathLike,
    kind: str,
    config: dict,
    tensors: dict[str, torch.Tensor],
    locked: bool = False,
) -> Path:
    """Write a part folder: ``model.safetensors`` (``tensors``), then ``config.json`` with
    ``kind``, the version and ``config`` (JSON values). ``load_part(folder, kind)`` reads it.
    ``locked``: the caller holds the folder's lock already (a job that writes the whole)."""
    out = Path(folder)
    with nullcontext() if locked else folder_lock(out):
        save_weights(out / WEIGHTS_FILE, tensors)
        write_json(out / CONFIG_FILE, {"kind": kind, "version": __version__, "config": config})
    return out


def load_part(folder: str | os.PathLike, kind: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, tensors) of a part folder written by ``save_part`` with this ``kind``.

    Raises:
        CheckpointError: no such folder, a corrupt one, or one of another kind.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    record = read_record(folder)
    path = Path(folder)
    if record.get("kind") != kind or not isinstance(record.get("config"), dict):
        found = record.get("kind") or record.get("family") or "no kind"
        raise CheckpointError(
            f"{path} holds {found!r}, not {kind!r}; give a folder of that kind, or re-create it"
        )
    try:
        tensors = load_file(str(path / WEIGHTS_FILE))
    except (OSError, ValueError, SafetensorError) as err:
        first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise CheckpointError(
            f"{path / WEIGHTS_FILE}: cannot load the {kind} ({first}); re-create it"
        ) from None
    return record["config"], tensors


def _head_task(model) -> str | None:
    """The task of a classifier of ``lmforge.models.heads``; None for a model of a registered
    family, answered without importing torch for a counted one."""
    try:
        family_of(model)
    except UnknownModelError:
        from lmforge.models.heads import head_task  # torch: every classifier is neural

        return head_task(model)
    return None


def read_record(folder: str | os.PathLike) -> dict:
    """A model folder's ``config.json``.

    Raises:
        CheckpointError: no such folder, no ``config.json``, or a corrupt one.
    """
    path = Path(folder)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such model folder")
    return read_json(path / CONFIG_FILE, "model config")


def load_model(path: str | os.PathLike):
    """Load whatever a model path holds.

    Args:
        path: an ARPA file or a binary n-gram file (``lmforge ngram binary``); an lmforge model
            folder (any family, or a fine-tuned classifier);
            or a Hugging Face folder (BERT-architecture or an exported GPT-2), imported in
            memory.

    Returns:
        (model in eval mode, tokenizer or None, record): the record is the folder's
        ``config.json`` (for an ARPA file or a Hugging Face folder, one made here).

    Raises:
        CheckpointError: a missing path, a folder that holds no model, corrupt files; the
            message names the file and what to do.
    """
    target = Path(path)
    if target.is_file():  # an n-gram model, the one kind that is a single file
        ngram = get_family("ngram").model_class
        model = ngram.load_binary(target) if is_binary(target) else ngram.load_arpa(target)
        return model, None, {"family": "ngram"}
    if not target.is_dir():
        raise CheckpointError(
            f"{target}: no such model; give a model folder (lmforge or Hugging Face) or an "
            ".arpa file"
        )
    if not (target / CONFIG_FILE).exists() and not (target / "modules.json").exists():
        raise CheckpointError(
            f"{target} holds no {CONFIG_FILE}: not a model folder; give a folder written by "
            "lmforge or a Hugging Face model folder"
        )
    record = (
        read_json(target / CONFIG_FILE, "model config") if (target / CONFIG_FILE).exists() else {}
    )
    if "family" not in record and "kind" in record:
        hint = (
            "use `lmforge omni chat` or `lmforge omni eval`"
            if record["kind"] == "omni"
            else ("it is a part of another model, not a model")
        )
        raise CheckpointError(f"{target} holds a {record['kind']!r}, not a language model; {hint}")
    if "family" not in record:
        return _load_hf(target)
    try:
        family = get_family(record["family"])
    except LMForgeError as err:
        raise CheckpointError(f"{target / CONFIG_FILE}: {err}; re-create the folder") from None
    if family.fitting == "counting":
        model = family.model_class.load_arpa(target / ARPA_FILE)
        tokenizer_file = target / TOKENIZER_FILE
        tokenizer = load_tokenizer(tokenizer_file) if tokenizer_file.exists() else None
        return model, tokenizer, record
    model = _build(target, family, record)
    _load_weights(model, target / WEIGHTS_FILE)
    base = model.base if record.get("task") is not None else model
    base.fresh_heads = tuple(record.get("fresh_heads", ()))
    tokenizer = load_tokenizer(target / TOKENIZER_FILE)
    tokenizer.chat_template = record.get("chat_template")  # a chat model's (lmforge.chat)
    return model.eval(), tokenizer, record


def _build(folder: Path, family, record: dict):
    """A fresh model of ``family`` (or a classifier on one) as ``record`` describes it."""
    try:
        config = build_config(family.config_class, record.get("config", {}), {})
    except LMForgeError as err:
        raise CheckpointError(f"{folder / CONFIG_FILE}: {err}; re-create the folder") from None
    model = family.model_class(config)
    task = record.get("task")
    if task is None:
        return model
    from lmforge.models.heads import HEADS

    labels = record.get("labels")
    if task not in HEADS or not isinstance(labels, list):
        raise CheckpointError(
            f"{folder / CONFIG_FILE}: a classifier folder needs a task ({', '.join(HEADS)}) and "
            "its labels; re-create it with `lmforge finetune`"
        )
    return HEADS[task](model, len(labels))


def _load_weights(model: torch.nn.Module, path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        model.load_state_dict(load_file(str(path)))
    except (OSError, RuntimeError, ValueError, SafetensorError) as err:
        first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise CheckpointError(
            f"{path}: cannot load the weights ({first}); retrain or re-create the folder"
        ) from None


def _load_hf(folder: Path):
    """A Hugging Face folder imported in memory (heads it lacks are a warning)."""
    from lmforge.hub.hf import import_hf

    model, tokenizer = import_hf(folder)
    record = {
        "family": family_of(model).name,
        "source": "huggingface",
        "fresh_heads": list(model.fresh_heads),
    }
    return model, tokenizer, record
