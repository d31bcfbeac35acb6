"""Registries: plain dictionaries from a part's name to the part, filled in beside each part's class.

    CELLS = Registry("model.cell", "recurrent cell")

    @CELLS.register("peephole")
    class PeepholeLSTM(...): ...

A part's name is written once, in its registration; everything else (recipe checks, error messages, the CLI)
asks the registry. A registry is a dict, so `grep -n 'register("crf")'` finds where a part is defined and
`list(HEADS)` lists them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from .errors import SeqtagError

Part = TypeVar("Part")


class Registry(dict):
    """name → part (a class or a function). `setting` is the recipe key that names one (for error messages)."""

    def __init__(self, setting: str, kind: str):
        super().__init__()
        self.setting = setting
        self.kind = kind

    def register(self, name: str, part: Part | None = None) -> Callable[[Part], Part] | Part:
        """Add `part` under `name`; used as a decorator when `part` is not given."""
        def add(part: Part) -> Part:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice: {self[name]!r} and {part!r}")
            self[name] = part
            return part

        return add if part is None else add(part)

    def check(self, name: str, allowed: Iterable[str] | None = None, where: str | None = None) -> None:
        """A SeqtagError naming the setting when `name` is not registered (or not among `allowed`)."""
        allowed = list(self) if allowed is None else list(allowed)
        if name not in allowed:
            raise SeqtagError(f"{where or self.setting} is {name!r}; expected one of {', '.join(map(repr, allowed))}.")
