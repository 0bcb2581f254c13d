"""Blocks shared by the neural families, and their initialisations. Each takes explicit sizes,
never a whole config."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["AdaptiveInput", "FeedForward", "OutputHead", "init_normal", "init_uniform"]


def init_normal(model: nn.Module, std: float = 0.02) -> None:
    """N(0, std) weights of every Linear and Embedding and zero Linear biases, module by module
    (GPT-2, Radford et al. 2019; BERT, Devlin et al. 2019)."""
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)


def init_uniform(model: nn.Module, bound: float) -> None:
    """Every parameter U(-bound, bound), a shared (tied) tensor once (Zaremba et al. 2014)."""
    for p in model.parameters():
        nn.init.uniform_(p, -bound, bound)


class FeedForward(nn.Module):
    """Position-wise feed-forward network, FFN(x) = W_2 act(W_1 x + b_1) + b_2 (Vaswani et al.
    2017, eq. 2), with dropout on its output (the residual branch).

    The activation is ReLU in the Transformer, exact GELU x Φ(x) (Hendrycks & Gimpel 2016) in
    GPT and BERT, as nanoGPT (GPT-2 used the tanh approximation, which differs by < 1e-3 and is
    twice as slow in PyTorch on CPU). W_1 is ``fc`` and W_2 ``proj``: the names that saved
    folders and the Hugging Face name tables (``lmforge.hub.hf``) use.

    Args:
        d_model: input and output width.
        d_ff: hidden width.
        dropout: dropout probability on the output.
        activation: ``F.relu`` or ``F.gelu``.
        bias: whether both linear layers have biases.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        dropout: float,
        activation: Callable[[torch.Tensor], torch.Tensor] = F.gelu,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.fc = nn.Linear(d_model, d_ff, bias=bias)
        self.proj = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(self.activation(self.fc(x)))  # (B, T, d_model)
        return self.dropout(y) if self.training else y  # (eval: skip the call, it is per token)


class OutputHead(nn.Module):
    """Maps hidden vectors to next-token log-probabilities: a full softmax or an adaptive one.

    With ``cutoffs`` empty this is one linear layer (optionally sharing its weight with the input
    embedding: ``tie_to``). With cutoffs it is ``torch.nn.AdaptiveLogSoftmaxWithLoss`` (Grave et
    al. 2017): frequent tokens (ids below the first cutoff) in the head, rarer ones in smaller
    clusters, which makes large vocabularies cheap. Token ids must be sorted by falling frequency
    for that to pay (the ``word`` tokenizer's are).

    Args:
        d_in: size of the hidden vectors.
        vocab_size: number of tokens.
        cutoffs: increasing cluster boundaries, each < vocab_size; () for a full softmax.
        tie_to: an ``nn.Embedding`` of shape (vocab_size, d_in) whose weight the full softmax
            reuses (Press & Wolf 2017); not allowed with cutoffs.
    """

    def __init__(
        self,
        d_in: int,
        vocab_size: int,
        cutoffs: tuple[int, ...] = (),
        tie_to: nn.Embedding | None = None,
    ) -> None:
        super().__init__()
        self.cutoffs = tuple(c for c in cutoffs if c < vocab_size)
        if self.cutoffs:
            assert tie_to is None, "tied embeddings need a full softmax"
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(d_in, vocab_size, list(self.cutoffs))
        else:
            self.linear = nn.Linear(d_in, vocab_size, bias=tie_to is None)
            if tie_to is not None:
                self.linear.weight = tie_to.weight

    def log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., vocab_size) log-probabilities of every token."""
        if self.cutoffs:
            flat = self.adaptive.log_prob(hidden.reshape(-1, hidden.shape[-1]))
            return flat.view(*hidden.shape[:-1], -1)
        return F.log_softmax(self.linear(hidden), dim=-1)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., vocab_size) unnormalised scores (log-probs for adaptive)."""
        return self.log_probs(hidden) if self.cutoffs else self.linear(hidden)

    def target_log_probs(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B, T, d_in), (B, T) -> (B, T) log p(target) without building all log-probs when
        the softmax is adaptive."""
        if self.cutoffs:
            out = self.adaptive(hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1))
            return out.output.view(targets.shape)
        logits = self.linear(hidden)
        return -F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
        ).view(targets.shape)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """(...) ids -> (..., d_in) input vectors read from the adaptive softmax's own weights
        (adaptive input tied to the adaptive softmax, Baevski & Auli 2019).

        A token of the head reads its row of the head matrix; a token of tail cluster i reads its
        row of the cluster's output matrix (d_in / 4^(i+1) wide) mapped back to d_in by the
        transpose of the cluster's down-projection. Rare tokens thus share most of their
        input parameters with their output ones and with each other.
        """
        assert self.cutoffs, "embed() ties an adaptive softmax; a full one ties via tie_to"
        adaptive = self.adaptive
        flat = ids.reshape(-1)
        vectors = F.embedding(flat.clamp(max=adaptive.shortlist_size - 1), adaptive.head.weight)
        bounds = adaptive.cutoffs  # [c_1, ..., vocab_size]
        for i, (low, high) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            down, table = adaptive.tail[i]  # Linear(d_in, h), Linear(h, cluster size)
            local = (flat - low).clamp(0, high - low - 1)
            cluster = F.embedding(local, table.weight) @ down.weight  # (N, h) @ (h, d_in)
            inside = ((flat >= low) & (flat < high)).unsqueeze(-1)
            vectors = torch.where(inside, cluster, vectors)
        return vectors.view(*ids.shape, -1)


class AdaptiveInput(nn.Module):
    """Token embedding that reads an adaptive ``OutputHead``'s weights (``OutputHead.embed``).

    It owns no parameters (the head does; the head is not registered here, so state dicts and
    parameter counts hold each tensor once). ``weight`` is the head matrix, for the device/dtype
    lookups that other code makes on a token embedding.
    """

    def __init__(self, head: OutputHead) -> None:
        super().__init__()
        object.__setattr__(self, "_head", head)  # a reference, not a submodule

    @property
    def weight(self) -> torch.Tensor:
        return self._head.adaptive.head.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self._head.embed(ids)
