"""What the registry knows about a model family."""

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
    """

    name: str
    config_class: type
    model_class: type
    fitting: str
    summary: str
