"""Activate an adapter setup on a model for the duration of a block.

    with active(model, Stack("qu", "ner")):      # zero-shot transfer to Quechua
        logits = model(**batch).logits

The previous setup (often ``Stack("en", "ner")`` from training) is restored on exit, also when
the block raises.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import nn

from madx.compose.stack import Stack
from madx.inject.model import get_active, set_active


@contextmanager
def active(model: nn.Module, setup: Stack | str | Sequence[str] | None) -> Iterator[nn.Module]:
    """``setup``: a Stack, one adapter name or a list of names (language first), as ``set_active`` takes it."""
    previous = get_active(model)
    set_active(model, setup)
    try:
        yield model
    finally:
        set_active(model, previous)
