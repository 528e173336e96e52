"""The stage interfaces. Each has one default implementation; any can be swapped.

The storage interfaces (documents, sessions, vectors) are in `contextd.store.protocols`.

    >>> from contextd.embedding import HashEmbedder
    >>> isinstance(HashEmbedder(), Embedder)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of shape (n, dim)."""

    @property
    def model_id(self) -> str:
        """Identifies model and settings; part of the embedding cache key."""
        ...

    @property
    def dim(self) -> int: ...

    def warm_up(self) -> None:
        """Load weights now rather than on the first call."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class TokenCounter(Protocol):
    @property
    def encoding_name(self) -> str: ...

    def count(self, text: str) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, tokens: Sequence[int]) -> str: ...


@runtime_checkable
class Summariser(Protocol):
    """Folds evicted turns into a running summary that fits `max_tokens`."""

    def summarise(
        self, previous: str | None, turns: Sequence[str], max_tokens: int, counter: TokenCounter
    ) -> str: ...
