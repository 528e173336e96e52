"""The stage interfaces. Each has one default implementation; any can be swapped.

    >>> from contextd.embedding import HashEmbedder
    >>> isinstance(HashEmbedder(), Embedder)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
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
class VectorIndex(Protocol):
    """Inner-product search over int64-labelled vectors. Thread-safe."""

    @property
    def kind(self) -> str: ...

    @property
    def seq(self) -> int:
        """Sequence number of the last change the index holds."""
        ...

    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray, seq: int) -> None: ...

    def remove(self, ids: np.ndarray, seq: int) -> None: ...

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for one query vector; `allowed` restricts the ids searched.

        Never returns padding: fewer than k results come back as shorter arrays.
        """
        ...

    def save(self, path: Path) -> None:
        """Write atomically (temp file, fsync, rename)."""
        ...


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
