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

__all__ = ["Family"]


@dataclass(frozen=True)
class Family:
    """A registered model family.

    Attributes:
        name: registry key, equal to the file name in ``lmforge/models/``.
        config_class: the family's config dataclass.
        model_class: the model class.
        fitting: "counting" (``model_class.fit``) or "trainer" (the one neural Trainer).
        summary: one line for listings.
        causal: True for left-to-right LMs, which answer ``log_probs`` and ``generate``; False
            for masked LMs (bert), which raise ConfigError there and are scored by
            pseudo-perplexity, and for encoder-decoders (``seq2seq`` below).
        seq2seq: True for encoder-decoder families trained on (source, target) pairs and
            decoded from a source (``seq2seq``, ``rnn_seq2seq``; protocol in
            ``lmforge.models.seq2seq``); they are not causal LMs.
        task: what the Trainer trains the family on (``lmforge.train.tasks.make_task``): "lm"
            (next-token prediction on a token stream), "mlm" (masked LM + next-sentence
            prediction) or "pairs" ((source, target) pairs).
        tokenizer: the tokenizer kind a run trains when none is asked for (bert: "wordpiece");
            None: the corpus's default (``lmforge.training.default_tokenizer``).
        embeds: True for encoders whose mean-pooled states are sentence embeddings
            (``lmforge.embed``: bert, MiniLM).
        promptable: True for left-to-right LMs whose probabilities read only the past, so that
            few-shot prompting can score a continuation (``lmforge.fewshot``); not elmo, whose
            probabilities average a backward LM that reads the future.
        classifier: how a pretrained model of the family becomes a text classifier: the name
            of a recipe in ``lmforge.vertical.recipes.RECIPES`` ("causal": ``CausalClassifier``
            trained with the auxiliary LM loss; "encoder": ``SequenceClassifier``; "features":
            frozen features and logistic regression); None: no ``lmforge vertical`` base.
        finetune_lr: the learning rate at which ``lmforge vertical`` fine-tunes it.
        dapt: (steps, lr) of ``lmforge vertical``'s domain pretraining on its own objective.
        speed: (training tokens/s on a 2-core CPU, parameters of the model measured), or None
            where it was not measured.
    """

    name: str
    config_class: type
    model_class: type
    fitting: str
    summary: str
    causal: bool = True
    seq2seq: bool = False
    task: str = "lm"
    embeds: bool = False
    tokenizer: str | None = None
    promptable: bool = False
    classifier: str | None = None
    finetune_lr: float = 0.0
    dapt: tuple[int, float] | None = None
    speed: tuple[float, int] | None = None
