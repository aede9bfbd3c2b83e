"""A name -> class registry, so a string in a config or on the command line picks the class.

Distances, miners, losses and index kinds each keep one `Registry`; `create(name, **kw)` is the
single factory in front of it (the timm pattern), and unknown names fail with the list of
known ones instead of a KeyError deep in a stack.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from lookalike.errors import ConfigError, LookalikeError

T = TypeVar("T")


class UnknownNameError(LookalikeError, ValueError):
    """Raised for a name that is not registered; the message lists the valid names."""


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def add(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise RuntimeError(f"{self.kind} {name!r} is registered twice")  # a bug in the code, not input
            self._entries[name] = factory
            return factory

        return add

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}") from None

    def create(self, name: str, **kwargs: Any) -> T:
        return self.get(name)(**kwargs)

    def arguments(self, name: str) -> set[str]:
        """The keyword arguments the registered `name` takes."""
        return {p for p in inspect.signature(self.get(name)).parameters if p != "self"}

    def check_arguments(self, name: str, given: Iterable[str], decided: Iterable[str] = ()) -> set[str]:
        """The arguments a user may set on `name` (all it takes but the `decided` ones, which the
        caller fills in); refuses any of `given` outside them by name, listing the choices, so an
        argument is never silently ignored."""
        settable = self.arguments(name) - set(decided)
        if unknown := set(given) - settable:
            choices = ", ".join(sorted(settable)) or "nothing"
            raise ConfigError(f"{self.kind} {name!r} takes no {', '.join(sorted(unknown))}; it takes: {choices}")
        return settable
