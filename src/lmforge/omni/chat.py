"""Talking to the any-to-any model: a user turn from text, a PNG and a WAV (files, or their bytes
as a server receives them); the reply's items written out as files (images and plots as PNG,
speech as WAV), or given back as those files' bytes.

An item the user gives is placed before the text, as the training conversations place it
("<image>...</image>What digit is this?").
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from lmforge.errors import DataError
from lmforge.omni.model import Omni
from lmforge.omni.vocab import Item

__all__ = ["reply_files", "user_turn", "write_reply"]

Source = str | os.PathLike | bytes  # a file, or its bytes


def user_turn(
    omni: Omni, message: str, image: Source | None = None, audio: Source | None = None
) -> dict:
    """The user's message as a turn: the image's and the sound's codes, then the text.

    Args:
        image: a PNG (any image PIL reads), as a path or as the file's bytes.
        audio: a PCM WAV, as a path or as the file's bytes.

    Raises:
        DataError: a missing or undecodable file, or a modality the model does not hold.
    """
    parts: list = []
    if image is not None:
        from lmforge.omni.image import image_from_png

        _needs(omni, "image", image)
        parts += omni.encode("image", _read(image_from_png, image, "the image")[None])
    if audio is not None:
        from lmforge.omni.speech import fit_length, read_wav

        _needs(omni, "speech", audio)
        wave = fit_length(_read(read_wav, audio, "the WAV"), omni.tokenizers["speech"])
        parts += omni.encode("speech", wave[None])
    if message:
        parts.append(message)
    if not parts:
        raise DataError("an empty turn: give --message TEXT, --image PNG or --audio WAV")
    return {"role": "user", "content": parts}


def _read(read: Callable, source: Source, label: str):
    """``read(path)``; bytes are written to a temporary file first, and ``label`` stands for
    that file's name in an error."""
    if not isinstance(source, bytes):
        return read(source)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload"
        path.write_bytes(source)
        try:
            return read(path)
        except DataError as err:
            raise DataError(str(err).replace(str(path), label)) from None


def _needs(omni: Omni, modality: str, source: Source) -> None:
    if modality not in omni.tokenizers:
        shown = f"the {modality} given" if isinstance(source, bytes) else source
        raise DataError(f"{shown}: this model has no {modality} tokenizer; give text only")


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
    return {"reply": _joined(text), "images": images, "audio": audio}


def reply_files(omni: Omni, parts: list) -> dict:
    """``{"reply": text, "images": [PNG bytes], "audio": [WAV bytes]}``: the reply as a server
    sends it, each item decoded as ``write_reply`` writes it, the text without file names."""
    with tempfile.TemporaryDirectory() as folder:
        written = write_reply(omni, parts, folder)
        return {
            "reply": _joined(p for p in parts if isinstance(p, str)),
            "images": [Path(p).read_bytes() for p in written["images"]],
            "audio": [Path(p).read_bytes() for p in written["audio"]],
        }


def _joined(texts) -> str:
    return " ".join(t.strip() for t in texts if t.strip())


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
