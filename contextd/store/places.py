"""Where chunks sit in their documents, remembered after the first read.

Every search of a namespace turns a few hundred chunk ids into (document id, chunk number)
pairs before it fuses them by document. A chunk's place never changes, and its id is never
given to another chunk of the namespace (ids only grow), so a place once read stays right for
as long as the chunk exists, and the store need only be asked about ids not seen before.

    >>> reads = []
    >>> places = ChunkPlaces(lambda ids: reads.append(sorted(ids)) or
    ...                      {i: ("doc", i) for i in ids if i < 3})
    >>> places({1, 2, 5}), places({2, 3})
    ({1: ('doc', 1), 2: ('doc', 2)}, {2: ('doc', 2)})
    >>> reads  # 2 was remembered; 5 and 3 do not exist and are asked about each time
    [[1, 2, 5], [3]]
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from itertools import islice

Place = tuple[str, int]
ReadPlaces = Callable[[list[int]], dict[int, Place]]

# Ids remembered per namespace (about 130 bytes each); past it the older half is forgotten.
DEFAULT_LIMIT = 200_000


class ChunkPlaces:
    """The place of each of `ids` that exists or existed: read from `read` (the store's
    `chunk_places`) the first time, from memory after.

    A chunk deleted since it was first read may still be answered for, so a caller reads a
    chunk's row before it shows the chunk (the retriever does, and skips a chunk whose row is
    gone). Thread-safe; holds at most `limit` ids."""

    def __init__(self, read: ReadPlaces, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._read = read
        self._limit = limit
        self._known: dict[int, Place] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._known)

    def __call__(self, ids: Collection[int]) -> dict[int, Place]:
        out: dict[int, Place] = {}
        missing: list[int] = []
        with self._lock:
            known = self._known
            for i in ids:
                place = known.get(i)
                if place is None:
                    missing.append(int(i))
                else:
                    out[i] = place
        if not missing:
            return out
        fresh = self._read(missing)  # outside the lock: a slow store holds up no other reader
        out.update(fresh)
        with self._lock:
            self._known.update(fresh)
            if len(self._known) > self._limit:
                # Dicts keep insertion order: the ids read longest ago go first.
                for key in list(islice(self._known, len(self._known) - self._limit // 2)):
                    del self._known[key]
        return out
