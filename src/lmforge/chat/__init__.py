"""Talk to the models: chat tuning and conversations.

* ``session``: ``load_chat_model``, ``reply`` (the assistant's next turn, streamed) and ``Reply``;
* ``tune``: ``chat_tune`` (supervised chat tuning of a causal LM on dialogues with the one
  Trainer, full or LoRA; the loss on the assistant's tokens only) and ``default_chat_model``
  (a small GPT pretrained on tang and tuned on tang-chat, in one command).

The dialogue format is in ``lmforge.data.dialogues``; role tokens and chat templates in
``lmforge.tokenize.chat``.
"""

from lmforge.chat.session import Reply, load_chat_model, reply
from lmforge.chat.tune import ChatTuning, chat_tune, default_chat_model, grow_vocab

__all__ = [
    "ChatTuning",
    "Reply",
    "chat_tune",
    "default_chat_model",
    "grow_vocab",
    "load_chat_model",
    "reply",
]
