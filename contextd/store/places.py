"""Chunk places and rows, remembered after the first read.

Every search of a namespace turns a few hundred chunk ids into (document id, chunk number)
pairs before it fuses them by document, and reads the rows (text, vector, metadata) of the
chunks its results show. A chunk never changes: a document written again gets new chunks, and
an id is never given to another chunk of the namespace (ids only grow). So a place or a row
once read stays right for as long as the chunk exists, and the store need only be asked about
ids not seen before.

    >>> reads = []
    >>> places = ChunkMemo(lambda ids: reads.append(sorted(ids)) or
    ...                    {i: ("doc", i) for i in ids if i < 3})
    >>> places({1, 2, 5}), places({2, 3})
    ({1: ('doc', 1), 2: ('doc', 2)}, {2: ('doc', 2)})
    >>> reads  # 2 was remembered; 5 and 3 do not exist and are asked about each time
    [[1, 2, 5], [3]]
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from typing import Generic, TypeVar

V = TypeVar("V")
Place = tuple[str, int]

# Places remembered per namespace (about 190 bytes each); past it the older half is forgotten.
DEFAULT_LIMIT = 200_000
# Bytes of chunk rows remembered per namespace (a row weighs its text, vector and ~300 bytes
# of objects: ~3.5 kB for a 256-piece chunk of a 384-dimension model, ~4,700 rows).
ROWS_LIMIT = 16 << 20


class ChunkMemo(Generic[V]):
    """What `read` (a store's `chunk_places` or `chunks`) says of each of `ids` that exists or
    existed: read the first time, from memory after.

    A chunk deleted since it was first read is answered for until `forget` is told of it
    (a namespace does so whenever its vector index drops or catches up chunks). Thread-safe;
    a read that began before a `forget` answers but keeps nothing. It holds at most `limit`
    of `weigh`'s units (one a value by default); past it, the older half of what it holds is
    forgotten."""

    def __init__(self, read: Callable[[list[int]], dict[int, V]], limit: int = DEFAULT_LIMIT,
                 weigh: Callable[[V], int] | None = None) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._read = read
        self._limit = limit
        self._weigh = weigh
        self._known: dict[int, tuple[V, int]] = {}
        self._weight = 0
        self._forgets = 0  # how many times ids were forgotten: a read begun before is not kept
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._known)

    def forget(self, ids: Collection[int] | None = None) -> None:
        """Forget `ids` (every id when None): they are read from the store next time."""
        with self._lock:
            self._forgets += 1
            if ids is None:
                self._known.clear()
                self._weight = 0
                return
            for i in ids:
                held = self._known.pop(i, None)
                if held is not None:
                    self._weight -= held[1]

    @property
    def weight(self) -> int:
        """What the values held weigh, in `weigh`'s units."""
        return self._weight

    def __call__(self, ids: Collection[int]) -> dict[int, V]:
        out: dict[int, V] = {}
        missing: list[int] = []
        with self._lock:
            known = self._known
            for i in ids:
                held = known.get(i)
                if held is None:
                    missing.append(int(i))
                else:
                    out[i] = held[0]
            forgets = self._forgets
        if not missing:
            return out
        fresh = self._read(missing)  # outside the lock: a slow store holds up no other reader
        out.update(fresh)
        weigh = self._weigh
        with self._lock:
            if self._forgets != forgets:
                return out  # read before ids were forgotten: it may hold one of them
            known = self._known
            for i, value in fresh.items():
                weight = 1 if weigh is None else weigh(value)
                if weight > self._limit:
                    continue  # would push out everything else
                previous = known.get(i)
                if previous is not None:  # two readers raced: the same value twice
                    self._weight -= previous[1]
                known[i] = (value, weight)
                self._weight += weight
            if self._weight > self._limit:
                # Dicts keep insertion order: the ids read longest ago go first.
                keys = iter(list(known))
                while self._weight > self._limit // 2:
                    self._weight -= known.pop(next(keys))[1]
        return out
