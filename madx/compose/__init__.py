"""Adapter composition as values (``Stack``). Nothing here touches a model: activating a setup
is ``madx.inject``'s job (``madx.active``), so this package sits below it."""

from madx.compose.stack import STACK_MODES, Stack

__all__ = ["STACK_MODES", "Stack"]
