"""Adapter composition as a small, validated, serialisable value.

``Stack("qu", "ner")`` means: the language adapter ``qu`` (and its invertible adapter, if it has
one) then the task adapter ``ner``, in every layer. Which name is a language and which a task is
known only to the model the stack is activated on; ``madx.inject`` checks the order there.

``mode`` says how a stack of two adapters is wired in a layer (see ``madx.inject.layer``):
``"paper"`` is MAD-X eq. 2 with footnote 2 (the default); ``"adapterhub"`` is how AdapterHub
``adapters`` 1.x stacks, needed to reproduce adapters trained with that library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

STACK_MODES: tuple[str, ...] = ("paper", "adapterhub")
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True, init=False)
class Stack:
    names: tuple[str, ...]
    mode: str = "paper"

    def __init__(self, *names: str, mode: str = "paper"):
        if not names:
            raise ValueError("a Stack needs at least one adapter name")
        if len(names) > 2:
            raise ValueError(f"a MAD-X Stack is (language, task), (language) or (task); got {len(names)} names: {names}")
        for name in names:
            if not isinstance(name, str) or not _NAME.match(name):
                raise ValueError(f"adapter name {name!r} must be a non-empty string of letters, digits, '_' or '-'")
        if len(set(names)) != len(names):
            raise ValueError(f"a Stack names each adapter once, got {names}")
        if mode not in STACK_MODES:
            raise ValueError(f"Stack mode must be one of {STACK_MODES}, got {mode!r}")
        object.__setattr__(self, "names", tuple(names))
        object.__setattr__(self, "mode", mode)

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __str__(self) -> str:
        suffix = "" if self.mode == "paper" else f", mode={self.mode}"
        return f"Stack({', '.join(self.names)}{suffix})"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "Stack", "names": list(self.names), "mode": self.mode}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Stack":
        if data.get("type") != "Stack" or not isinstance(data.get("names"), list):
            raise ValueError(f"not a serialised Stack: {data!r} (expected {{'type': 'Stack', 'names': [...]}})")
        return cls(*data["names"], mode=data.get("mode", "paper"))

    @classmethod
    def parse(cls, text: str, mode: str = "paper") -> "Stack":
        """``"qu+ner"`` or ``"qu,ner"`` -> Stack("qu", "ner")."""
        return cls(*[part.strip() for part in re.split(r"[+,]", text) if part.strip()], mode=mode)
