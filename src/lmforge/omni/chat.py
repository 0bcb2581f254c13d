"""Talking to the any-to-any model: a user turn from text, a PNG and a WAV; the reply's items
written out as files (images and plots as PNG, speech as WAV).

An item the user gives is placed before the text, as the training conversations place it
("<image>...</image>What digit is this?").
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lmforge.errors import DataError
from lmforge.omni.model import Omni
from lmforge.omni.vocab import Item

__all__ = ["user_turn", "write_reply"]


def user_turn(
    omni: Omni,
    message: str,
    image: str | os.PathLike | None = None,
    audio: str | os.PathLike | None = None,
) -> dict:
    """The user's message as a turn: the image's and the sound's codes, then the text.

    Raises:
        DataError: a missing or undecodable file, or a modality the model does not hold.
    """
    parts: list = []
    if image is not None:
        from lmforge.omni.image import image_from_png

        parts += omni.encode(_needs(omni, "image", image), image_from_png(image)[None])
    if audio is not None:
        from lmforge.omni.speech import fit_length, read_wav

        wave = fit_length(read_wav(audio), omni.tokenizers[_needs(omni, "speech", audio)])
        parts += omni.encode("speech", wave[None])
    if message:
        parts.append(message)
    if not parts:
        raise DataError("an empty turn: give --message TEXT, --image PNG or --audio WAV")
    return {"role": "user", "content": parts}


def _needs(omni: Omni, modality: str, path) -> str:
    if modality not in omni.tokenizers:
        raise DataError(f"{path}: this model has no {modality} tokenizer; give text only")
    return modality


def write_reply(omni: Omni, parts: list, out_dir: str | os.PathLike, stem: str = "reply") -> dict:
    """``{"reply": text, "images": [PNG paths], "audio": [WAV paths]}``: each item of the reply
    decoded and written into ``out_dir`` (created), named ``stem-<n>.png`` / ``.wav``; the
    reply's text names each file in brackets where its item stood."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text, images, audio = [], [], []
    for n, part in enumerate(parts):
        if isinstance(part, str):
            text.append(part)
            continue
        decoded = omni.decode(part)
        path = out / f"{stem}-{n}.{'wav' if part.modality == 'speech' else 'png'}"
        _write_item(part, decoded, path)
        (audio if part.modality == "speech" else images).append(str(path))
        text.append(f"[{part.modality}: {path}]")
    return {
        "reply": " ".join(t.strip() for t in text if t.strip()),
        "images": images,
        "audio": audio,
    }


def _write_item(item: Item, decoded: torch.Tensor, path: Path) -> None:
    if item.modality == "speech":
        from lmforge.omni.speech import write_wav

        write_wav(path, decoded)
    elif item.modality == "image":
        from lmforge.omni.image import save_png

        save_png(path, decoded, scale=16)
    elif item.modality == "video":
        from lmforge.omni.image import image_grid, save_png

        save_png(path, image_grid(decoded, decoded.shape[0]), scale=8)
    else:
        _plot(item.modality, decoded, path)


def _plot(modality: str, decoded: torch.Tensor, path: Path) -> None:
    """A signal as a line, a point cloud as a 3-D scatter, written as PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from lmforge.checkpoint import atomic_write_bytes

    figure = plt.figure(figsize=(4, 3))
    if modality == "points":
        axes = figure.add_subplot(projection="3d")
        p = decoded.numpy()
        axes.scatter(p[:, 0], p[:, 1], p[:, 2], s=2)
    else:
        figure.gca().plot(decoded.numpy())
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
