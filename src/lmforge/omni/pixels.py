"""The picture layer under the image modality: PNG files in and out, and grids of images.

What ``lmforge.omni.image`` reads and writes pictures with, with no tokenizer in it (as
``lmforge.omni.audio`` is for speech): ``image_from_png`` turns a PNG of any size into the
model's 8x8 input, normalised like the digits set; ``save_png`` writes an image atomically;
``image_grid`` lays images out in rows. Its public names are importable from
``lmforge.omni.image`` too.
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.checkpoint import atomic_write_bytes
from lmforge.errors import ConfigError, DataError

__all__ = ["INK", "image_from_png", "image_grid", "save_png"]

INK = 0.1  # a PNG's pixels above this (after stretching to [0, 1]) are ink


def image_from_png(path: str | os.PathLike) -> torch.Tensor:
    """A PNG of any size as the model's 8x8 input, normalised like the digits set.

    A colour image (RGB, or RGBA composited over black) becomes grayscale. The image should
    have light ink on a dark ground, as in MNIST; one with a light border (mean of the outer
    pixels above one half) is inverted first, so dark ink on white also works. The gray levels
    are stretched to [0, 1], cropped to the ink's bounding box (pixels above 0.1), padded with
    black to a centred square (the digits set's digits fill the height of their box and no more),
    and resized to 8x8 by area averaging (PIL's box filter, as the digits set counted inked
    pixels in 4x4 blocks of 32x32 bitmaps). Last, the values are divided by their maximum, so the
    brightest cell is 1.0, as in the digits set (pixel / 16, where most digits reach 16).

    Returns:
        (8, 8) float32 in [0, 1].

    Raises:
        DataError: a missing file, one PIL cannot decode, or an image without ink.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            pixels = _gray_pixels(img)
    except FileNotFoundError:
        raise DataError(f"{path}: no such image; give a PNG file") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"{path}: cannot decode the image ({err}); give a PNG file") from None
    return _normalise_digit(pixels, str(path))


def _gray_pixels(img) -> torch.Tensor:
    """A PIL image as gray levels (H, W) in [0, 1]; transparency is composited over black (the
    dark ground), and 16-bit gray is scaled (PIL's conversion to 8 bits would clip it)."""
    from PIL import Image

    if img.mode.startswith("I") or img.mode == "F":
        pixels = torch.tensor(np.asarray(img, dtype=np.float32))
        return pixels / max(float(pixels.max()), 1.0)
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        ground = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(ground, rgba)
    return torch.tensor(np.asarray(img.convert("L")), dtype=torch.float32) / 255.0


def _normalise_digit(pixels: torch.Tensor, name: str) -> torch.Tensor:
    """Gray pixels (H, W) in [0, 1] -> the 8x8 digit, as ``image_from_png`` describes."""
    from PIL import Image

    border = torch.cat([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.mean() > 0.5:
        pixels = 1.0 - pixels
    low, high = float(pixels.min()), float(pixels.max())
    if high - low < 1e-6:
        raise DataError(f"{name}: the image is blank (one gray level); draw a digit on it")
    pixels = (pixels - low) / (high - low)
    rows = (pixels > INK).any(1).nonzero().flatten()
    cols = (pixels > INK).any(0).nonzero().flatten()
    crop = pixels[int(rows[0]) : int(rows[-1]) + 1, int(cols[0]) : int(cols[-1]) + 1]
    h, w = crop.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    square = F.pad(crop, (left, side - w - left, top, side - h - top))  # (side, side)
    big = Image.fromarray((square * 255).round().to(torch.uint8).numpy())
    if side < 32:  # upsample first so the box filter averages whole cells, as optdigits did
        big = big.resize((32, 32), Image.Resampling.NEAREST)
    small = big.resize((8, 8), Image.Resampling.BOX)
    out = torch.tensor(np.asarray(small), dtype=torch.float32)  # (8, 8)
    return out / out.max()


def save_png(path: str | os.PathLike, image: torch.Tensor, scale: int = 8) -> None:
    """Write ``image`` (H, W) in [0, 1] as a grayscale PNG, each pixel ``scale`` x ``scale``,
    atomically."""
    from PIL import Image

    if not torch.is_tensor(image) or image.dim() != 2:
        shape = tuple(image.shape) if torch.is_tensor(image) else type(image).__name__
        raise DataError(f"save_png takes one image of shape (H, W), got {shape}")
    if scale < 1:
        raise ConfigError(f"scale must be >= 1, got {scale!r}")
    pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    img = Image.fromarray(pixels)
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def image_grid(
    images: torch.Tensor, cols: int, pad: int = 1, pad_value: float = 0.5
) -> torch.Tensor:
    """Images (N, H, W) laid out ``cols`` to a row, ``pad`` pixels of ``pad_value`` between
    and around them: (rows * (H + pad) + pad, cols * (W + pad) + pad)."""
    if not torch.is_tensor(images) or images.dim() != 3 or len(images) == 0:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise DataError(f"image_grid takes images of shape (N, H, W) with N >= 1, got {shape}")
    if cols < 1:
        raise ConfigError(f"cols must be >= 1, got {cols!r}")
    n, h, w = images.shape
    rows = -(-n // cols)
    grid = torch.full((rows * (h + pad) + pad, cols * (w + pad) + pad), float(pad_value))
    for i, image in enumerate(images.detach().float()):
        r, c = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top : top + h, left : left + w] = image
    return grid
