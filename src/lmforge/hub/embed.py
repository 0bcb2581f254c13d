"""Sentence embeddings from a BERT-architecture encoder, as sentence-transformers computes them.

``embed(model, tokenizer, sentences)`` (Reimers & Gurevych 2019): [CLS] tokens [SEP], truncated to
the checkpoint's max length, the mean of the last hidden vectors over real tokens, L2-normalised.
``load_encoder`` finds the encoder in any folder that holds one: an lmforge ``bert`` folder, a
classifier fine-tuned from one, or a Hugging Face BERT/MiniLM folder.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from lmforge.checkpoint import atomic_write_bytes
from lmforge.data.batching import pad_rows
from lmforge.errors import ConfigError
from lmforge.folders import load_model
from lmforge.models import family_of
from lmforge.models.bert import BERT, l2_normalize, mean_pool
from lmforge.models.heads import head_task
from lmforge.tokenize import PAD_ID, PretrainedTokenizer, Tokenizer

__all__ = ["embed", "load_encoder", "save_embeddings"]


def load_encoder(path: str | os.PathLike):
    """The BERT encoder and tokenizer of a model folder: an lmforge ``bert`` folder, a classifier
    fine-tuned from one (its encoder), or a Hugging Face BERT-architecture folder.

    Raises:
        CheckpointError: no such folder, or a broken one.
        ConfigError: the folder holds a model with no BERT encoder.
    """
    with warnings.catch_warnings():  # absent MLM/NSP heads do not matter for embeddings
        warnings.simplefilter("ignore")
        model, tokenizer, _ = load_model(path)
    encoder = model.base if head_task(model) else model
    if tokenizer is None or not family_of(encoder).embeds:
        raise ConfigError(
            f"{path} holds a {type(encoder).__name__} model; sentence embeddings need a "
            "BERT-architecture encoder (lmforge bert or a Hugging Face BERT/MiniLM folder)"
        )
    return encoder, tokenizer


def embed(
    model: BERT,
    tokenizer: Tokenizer,
    sentences: Sequence[str],
    batch_size: int = 32,
    max_length: int | None = None,
) -> np.ndarray:
    """Sentence embeddings: mean of the last hidden vectors over real tokens, L2-normalised.

    Each sentence (empty ones too) becomes [CLS] tokens [SEP] (``<s>`` ... ``</s>`` with an
    lmforge tokenizer), truncated to ``max_length`` tokens. Sentences are batched longest first
    so that a batch holds little padding (as sentence-transformers does).

    Args:
        model: a BERT (its mode is restored afterwards).
        tokenizer: the model's tokenizer.
        sentences: the texts.
        batch_size: sentences per forward pass.
        max_length: most tokens per sentence, markers included; default the tokenizer's
            (sentence-transformers' max_seq_length) or the model's max_seq_len.

    Returns:
        (len(sentences), d_model) float32 array of unit vectors.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    limit = min(max_length or _tokenizer_limit(tokenizer), model.config.max_seq_len)
    if limit < 2:
        raise ConfigError(f"max_length must leave room for the two markers, got {limit}")
    rows = [
        r if len(r) <= limit else [*r[: limit - 1], r[-1]]
        for r in tokenizer.encode_batch(sentences)
    ]
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
    out = np.empty((len(rows), model.config.d_model), dtype=np.float32)
    pad = tokenizer.pad_id if isinstance(tokenizer, PretrainedTokenizer) else PAD_ID
    device = model.tok_emb.weight.device
    training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(rows), batch_size):
                chosen = order[start : start + batch_size]
                ids, mask = (t.to(device) for t in pad_rows([rows[i] for i in chosen], pad))
                vectors = l2_normalize(mean_pool(model.encode(ids, attention_mask=mask), mask))
                out[chosen] = vectors.float().cpu().numpy()
    finally:
        model.train(training)
    return out


def _tokenizer_limit(tokenizer: Tokenizer) -> int:
    if isinstance(tokenizer, PretrainedTokenizer) and tokenizer.max_length:
        return tokenizer.max_length
    return 1 << 30


def save_embeddings(path: str | os.PathLike, vectors: np.ndarray) -> None:
    """Write an .npy file atomically."""
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())
