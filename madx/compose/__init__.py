from madx.compose.context import active
from madx.compose.stack import STACK_MODES, Stack

__all__ = ["STACK_MODES", "Stack", "active"]
