"""A mapping from provider name to provider, loaded lazily.

Each pluggable family (executor, storage, publisher, verifier) declares one
`ProviderRegistry` in its package `__init__`, naming each provider's module.
Adding a provider means adding a module and a line. Providers are imported
only when first used, so the CLI starts fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from bacalhau_py.errors import UserInputError


class ProviderRegistry(Mapping[str, str]):
    """name -> "module:attribute"; `load(name)` imports and returns the attribute."""

    def __init__(self, family: str, providers: dict[str, str]) -> None:
        self.family = family
        self._providers = dict(providers)
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, name: str) -> str:
        return self._providers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._providers)

    def __len__(self) -> int:
        return len(self._providers)

    def load(self, name: str) -> Any:
        """The provider class (or factory) registered as `name`."""
        if name not in self._providers:
            raise UserInputError(
                f"unknown {self.family} {name!r} (expected one of {', '.join(self._providers)})"
            )
        if name not in self._loaded:
            module, _, attribute = self._providers[name].partition(":")
            self._loaded[name] = getattr(importlib.import_module(module), attribute)
        return self._loaded[name]
