"""The plain hybrid turn-retrieval baseline that conversation memory has to beat.

Every turn is embedded and indexed for bm25; a question ranks all turns by cosine similarity
and by bm25, the two rankings are fused by reciprocal rank fusion (k = 60), and the history
budget is filled with turns in fused order, skipping any turn that no longer fits. There is no
recent window, no summary and no neighbour expansion: what is left when the memory's design is
taken away. Costs are chat-message tokens (`message_tokens`), as for the memory and the
last-turns baseline, so the three spend the same budget.

    >>> index = TurnIndex.build(engine, messages)  # doctest: +SKIP
    >>> kept = index.fill(index.rank("What is the name of Tom's dog?"), 1000)  # doctest: +SKIP

bm25 runs in an in-memory SQLite FTS5 table with the porter tokenizer of the engine's own turn
index; the query terms are those of the engine's lexical search (`query_terms`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from contextd.engine import Engine
from contextd.models import ChatMessage
from contextd.retrieval.fusion import fuse_rrf
from contextd.retrieval.lexical import fts_query, query_terms
from contextd.sessions import turn_embedding_text
from contextd.tokens import get_counter, message_tokens

RRF_K = 60.0
# The tokenizer of the engine's turns_fts table (contextd/store/schema.py).
_TOKENIZE = "porter unicode61 remove_diacritics 2"


@dataclass
class TurnIndex:
    """Dense vectors, an FTS5 bm25 index and chat-message costs for one conversation's turns.

    `messages` are `ChatMessage` dicts with an `id`; build with `TurnIndex.build`.
    """

    engine: Engine
    messages: list[dict[str, Any]]
    vectors: np.ndarray
    costs: list[int]
    lexical: sqlite3.Connection

    @classmethod
    def build(cls, engine: Engine, messages: Sequence[dict[str, Any]],
              namespace: str = "eval-conversations") -> TurnIndex:
        """Embed every turn through the engine's embedding cache and index it for bm25.

        The texts are those the session embeds for recall, so appending the same turns to a
        session afterwards finds every vector in the cache.

            >>> index = TurnIndex.build(engine, [{"role": "user", "content": "hi", "id": "t1"}])
            ... # doctest: +SKIP
        """
        parsed = [ChatMessage.model_validate(m) for m in messages]
        texts = [turn_embedding_text(m) if m.content else "" for m in parsed]
        # Through the namespace the evaluation's sessions use, so both share the vectors.
        vectors, _, _ = engine.registry.cache.embed(engine.embedder, texts,
                                                    namespace=namespace)
        counter = get_counter()
        costs = [message_tokens(m.openai(), counter) for m in parsed]
        lexical = sqlite3.connect(":memory:", check_same_thread=False)
        lexical.execute(
            f"CREATE VIRTUAL TABLE turns USING fts5(name, content, tokenize='{_TOKENIZE}')"
        )
        lexical.executemany(
            "INSERT INTO turns(rowid, name, content) VALUES (?, ?, ?)",
            [(i, m.name or "", m.content or "") for i, m in enumerate(parsed)],
        )
        return cls(engine, list(messages), vectors, costs, lexical)

    def close(self) -> None:
        """Free the in-memory bm25 index."""
        self.lexical.close()

    def dense_ranking(self, question: str) -> list[int]:
        """Turn positions by cosine similarity to the question, best first (all turns)."""
        scores = self.vectors @ self.engine.embed_query(question)
        # A stable sort on the negated score: equal scores keep conversation order.
        return [int(i) for i in np.argsort(-scores, kind="stable")]

    def lexical_ranking(self, question: str) -> list[int]:
        """Positions of the turns sharing a query term with the question, best bm25 first."""
        terms = query_terms(question)
        if not terms:
            return []
        rows = self.lexical.execute(
            "SELECT rowid FROM turns WHERE turns MATCH ? ORDER BY bm25(turns), rowid",
            (fts_query(question, terms),),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def rank(self, question: str) -> list[int]:
        """Turn positions in RRF (k = 60) order of the dense and the bm25 ranking."""
        fused = fuse_rrf([self.dense_ranking(question), self.lexical_ranking(question)], k=RRF_K)
        return [item for item, _ in fused]

    def fill(self, ranking: Sequence[int], budget: int) -> list[dict[str, Any]]:
        """The turns taken in `ranking` order while they fit `budget` tokens (a turn that does
        not fit is skipped, a later smaller one may still fit), in conversation order."""
        taken: list[int] = []
        used = 0
        for position in ranking:
            cost = self.costs[position]
            if used + cost <= budget:
                taken.append(position)
                used += cost
        return [self.messages[i] for i in sorted(taken)]

    def tokens(self, kept: Sequence[dict[str, Any]]) -> int:
        """Chat-message tokens of `kept` turns, by the same count as `fill`."""
        by_id = {m["id"]: cost for m, cost in zip(self.messages, self.costs, strict=True)}
        return sum(by_id[m["id"]] for m in kept)
