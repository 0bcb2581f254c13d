"""What the registry knows about a model family, and what a neural family must answer.

A neural family (``fitting == "trainer"``) is a config dataclass (plain values; ``vocab_size`` is
set from the tokenizer by the caller; ``__post_init__`` raises ``ConfigError`` naming the field)
and an ``nn.Module`` built from it, with:

- ``recurrent: bool`` (class attribute): True when a state is carried from batch to batch
  (truncated BPTT: rnn, lstm, gru); the Trainer picks its batching from this alone.
- ``context_size: int`` (property): how many tokens a non-recurrent model reads at once
  (nnlm: its n-1 previous tokens; gpt: ``max_seq_len``); 0 for recurrent models. A model
  whose config has ``max_seq_len`` (learned positions) is trained and evaluated in windows of
  exactly that length.
- ``init_state(batch_size, device)``: the start state, or None for non-recurrent models.
- ``forward(ids, state=None) -> (logits, state)``: ids (B, T) -> logits (B, T, V) of the next
  token at every position.
- ``log_probs(inputs, targets, state=None) -> (logp, state)``: (B, T), (B, T) ->
  log p(targets[:, t] | inputs[:, :t+1]) as (B, T); the loss is ``-logp.mean()``.
- ``step(ids, cache=None) -> (logits, cache)``: generation; ids (B, t) are the prompt when
  cache is None, else the newest token(s); logits (B, V) of the next token.
- ``generate(prompt_ids, max_new_tokens, sampler)``: (B, t) -> (B, t + max_new_tokens), through
  ``lmforge.nn.decoding.generate``.
- ``num_parameters()``: the number of parameters, a shared (tied) tensor counted once.

The parts that read the same in several families (``lmforge.nn.protocol``, and
``lmforge.nn.decoding.generate``) are bound as class attributes, ``init_state = no_state``,
rather than inherited. Building a model from a config whose ``vocab_size`` is still 0 raises
ConfigError.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Adaptation", "Family"]


@dataclass(frozen=True)
class Adaptation:
    """How ``lmforge vertical`` adapts a pretrained model of a family to a domain.

    Attributes:
        recipe: the name of a recipe in ``lmforge.vertical.recipes.RECIPES`` ("causal":
            ``CausalClassifier`` trained with the auxiliary LM loss; "encoder":
            ``SequenceClassifier``; "features": frozen features and logistic regression).
        lr: the learning rate at which it is fine-tuned.
        dapt: (steps, lr) of domain pretraining on the family's own objective.
        speed: (training tokens/s on a 2-core CPU, parameters of the model measured), or None
            where it was not measured.
    """

    recipe: str
    lr: float
    dapt: tuple[int, float]
    speed: tuple[float, int] | None = None


@dataclass(frozen=True)
class Family:
    """A registered model family.

    Attributes:
        name: registry key, equal to the file name in ``lmforge/models/``.
        config_class: the family's config dataclass.
        model_class: the model class.
        summary: one line for listings.
        fitting: "trainer" (the one neural Trainer) or "counting" (``model_class.fit``).
        task: what the family is trained on (``lmforge.train.tasks.make_task``): "lm"
            (next-token prediction on a token stream: a causal LM, which answers ``log_probs``
            and ``generate``), "mlm" (masked LM + next-sentence prediction: bert, scored by
            pseudo-perplexity) or "pairs" ((source, target) pairs: an encoder-decoder, decoded
            from a source; protocol in ``lmforge.models.seq2seq``).
        tokenizer: the tokenizer kind a run trains when none is asked for (bert: "wordpiece");
            None: the corpus's default (``lmforge.training.default_tokenizer``).
        embeds: True for encoders whose mean-pooled states are sentence embeddings
            (``lmforge.hub.embed``: bert, MiniLM).
        reads_future: True for a causal LM whose probabilities also read the future (elmo
            averages a backward LM), so that few-shot prompting cannot score a continuation.
        adaptation: how ``lmforge vertical`` adapts it (``Adaptation``); None: it is no base.
    """

    name: str
    config_class: type
    model_class: type
    summary: str
    fitting: str = "trainer"
    task: str = "lm"
    tokenizer: str | None = None
    embeds: bool = False
    reads_future: bool = False
    adaptation: Adaptation | None = None

    @property
    def causal(self) -> bool:
        """A left-to-right LM (``log_probs``, ``generate``)."""
        return self.task == "lm"

    @property
    def seq2seq(self) -> bool:
        """An encoder-decoder trained on (source, target) pairs."""
        return self.task == "pairs"

    @property
    def promptable(self) -> bool:
        """A left-to-right LM whose probabilities read only the past (``lmforge.fewshot``)."""
        return self.causal and not self.reads_future
