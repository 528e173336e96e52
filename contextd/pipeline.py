"""The assemble pipeline: budget, memory, retrieval, ranking, packing.

Priority is fixed: the system prompt and the query are never dropped; history comes next
(up to its share); documents take what is left, by rank.

    >>> pipeline.run(AssembleRequest(query="q", max_tokens=500))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace

import numpy as np

from contextd.assembler import DOCUMENTS_HEADER, BlockItem, pack_block
from contextd.cache.assembly import AssemblyCache
from contextd.cache.store import SemanticCache
from contextd.errors import BudgetTooSmall, InvalidRequest
from contextd.memory.conversation import (
    ConversationMemory,
    HistoryResult,
    HistoryState,
    ephemeral_turns,
)
from contextd.models import (
    AssembleRequest,
    AssembleResponse,
    ChatMessage,
    Dropped,
    OtherTurn,
    OutputMessage,
    Usage,
    UsedDocument,
)
from contextd.namespaces import NamespaceRegistry
from contextd.retrieval.documents import joined_parts
from contextd.retrieval.ranker import Ranker
from contextd.retrieval.retriever import STORE_READS, Candidate, ChunkReads, Retriever
from contextd.sessions import SessionService, content_tokens, parse_messages
from contextd.settings import Settings
from contextd.store.idempotency import IdempotencyKey
from contextd.store.records import TurnRow
from contextd.timings import timed
from contextd.tokens import (
    REPLY_PRIMING,
    TiktokenCounter,
    TokenBudget,
    message_framing,
    message_tokens,
    resolve_token_budget,
)

Budget = TokenBudget
# Retriever.lexical's signature: (namespace, query, k, filters) -> [(chunk id, bm25 score)].
LexicalSearch = Callable[..., list[tuple[int, float]]]
# (namespace, query vector, k, filters) -> Retriever.dense's [(chunk id, score)] computed
# already, or None for the retriever to search.
DenseSearch = Callable[..., list[tuple[int, float]] | None]


def resolve_budget(req: AssembleRequest, default_encoding: str) -> Budget:
    """The prompt budget and the counter that bills it."""
    return resolve_token_budget(req.model, req.max_tokens, req.reserve_output_tokens,
                                default_encoding)


class AssemblePipeline:
    def __init__(
        self, settings: Settings, registry: NamespaceRegistry, retriever: Retriever,
        ranker: Ranker, memory: ConversationMemory, sessions: SessionService,
        embed_query_async: Callable[[str], Future[np.ndarray]],
        cache: AssemblyCache | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.retriever = retriever
        self.ranker = ranker
        self.memory = memory
        self.sessions = sessions
        self.embed_query_async = embed_query_async
        self.cache = cache or AssemblyCache(SemanticCache(enabled=False))

    def run(self, req: AssembleRequest,
            idempotency: IdempotencyKey | None = None,
            embed_query_async: Callable[[str], Future[np.ndarray]] | None = None,
            lexical_search: LexicalSearch | None = None,
            dense_search: DenseSearch | None = None,
            chunk_reads: ChunkReads = STORE_READS) -> AssembleResponse:
        """Assemble `req`. A pure read of the stored state, except for appending the request's
        own `messages` to its session, which happens only once the request is known to be
        answerable (valid, within budget), so a rejected request stores nothing.
        `embed_query_async`, `lexical_search` and `dense_search` replace the query embedding,
        bm25 and the FAISS search (a batch computes its vectors in one forward pass, its bm25
        searches meanwhile, and its FAISS searches in one call); `chunk_reads` reads chunks
        (a batch reads each chunk once for all its items)."""
        embed = embed_query_async or self.embed_query_async
        lexical_search = lexical_search or self.retriever.lexical
        started = time.perf_counter()
        timings: dict[str, float] = {}
        with timed(timings, "budget"):
            budget = resolve_budget(req, self.settings.encoding)
            counter = budget.counter
        ns = self.registry.get(req.namespace)
        new_messages = parse_messages(req.messages or [])
        query, query_from_history = req.query.strip(), False
        if not query:
            last = self._last_message(req, new_messages)
            if last is None or last.role != "user" or not (last.content or "").strip():
                raise InvalidRequest("query is empty and the history does not end with a user "
                                     "message: send a query")
            query, query_from_history = (last.content or "").strip(), True

        fixed = [{"role": "system", "content": req.system}] if req.system else []
        query_message = {"role": "user", "content": query}
        fixed_costs = [message_tokens(m, counter) for m in (*fixed, query_message)]
        required = REPLY_PRIMING + sum(fixed_costs)
        if required > budget.tokens:
            raise BudgetTooSmall(
                f"the system prompt and the query alone need {required} tokens but the budget "
                f"is {budget.tokens}: raise max_tokens to at least {required}, or shorten them",
                minimum_budget=required)
        room = budget.tokens - required
        share = req.history_share if req.history_share is not None else self.settings.history_share
        history_budget = int(room * share)

        if req.session_id is not None and new_messages:
            # The one write an assemble makes, and only on request: the caller's new turns.
            # A repeat under the same idempotency key stores nothing and assembles afresh.
            if idempotency is not None:
                idempotency.bind("assemble", req.model_dump(mode="json"))
            self.sessions.append(req.namespace, req.session_id, new_messages, idempotency,
                                 user_id=req.user_id)
        # Keyed after the append: a request that stores turns is answered from the state they
        # made, never from the one before.
        with timed(timings, "cache"):
            probe = self.cache.probe(req, ns, query, query_from_history, budget)
            hit = probe.exact()
        if hit is not None:
            return _served(hit, timings, started)
        state = self._history_state(req, new_messages, counter, history_budget)
        if query_from_history and state.turns:
            state.turns = state.turns[:-1]
        history_available = (state.stored_tokens if state.sessions is not None else
                             content_tokens(sum(t.tokens for t in state.turns), len(state.turns)))

        vector = None
        needs_vector = req.top_k > 0 or (req.recall and state.sessions is not None and (
            state.summary_through > 0 or sum(t.tokens for t in state.turns) > history_budget
            or state.others is not None))
        pending = None
        if needs_vector:
            with timed(timings, "embed"):  # without micro-batching the vector is computed here
                pending = embed(query)
        lexical = None
        if req.top_k > 0 and room > 0:  # no room left: documents are skipped below
            # bm25 needs no vector: it runs while the batcher's thread embeds the query.
            with timed(timings, "lexical"):
                lexical = lexical_search(ns, query, self.ranker.pool_size(req.top_k),
                                         req.filters)
        if pending is not None:
            with timed(timings, "embed"):  # with it, only what is left of the forward pass
                vector = pending.result()
        with timed(timings, "cache"):  # near-duplicates need the vector assembling needs anyway
            hit = probe.lookup(vector)
        if hit is not None:
            return _served(hit, timings, started)
        with timed(timings, "memory"):
            history = self.memory.build(state, history_budget, query, vector, counter,
                                        recall=req.recall)

        documents_budget = room - history.tokens
        candidates: list[Candidate] = []
        duplicates: list[Candidate] = []
        documents_available = 0
        if req.top_k > 0 and documents_budget > 0:
            with timed(timings, "retrieval"):
                k = self.ranker.pool_size(req.top_k)
                dense = (dense_search(ns, vector, k, req.filters)
                         if dense_search is not None and vector is not None else None)
                pool = self.retriever.retrieve(ns, vector, query, k, req.filters,
                                               lexical=lexical, dense=dense,
                                               reads=chunk_reads)
            documents_available = sum(c.chunk.tokens for c in pool)
            with timed(timings, "ranking"):
                candidates, duplicates = self.ranker.rank(pool, req.top_k)
        with timed(timings, "packing"):
            response = self._pack(req, budget, fixed, query_message, fixed_costs, history,
                                  candidates, duplicates, documents_budget, counter)
        response.usage.history_available = history_available
        response.usage.documents_available = documents_available
        response.timings_ms = timings
        with timed(timings, "cache"):
            probe.store(response, vector)
        timings["total"] = round((time.perf_counter() - started) * 1000, 3)
        return response

    def _last_message(self, req: AssembleRequest,
                      new_messages: list[ChatMessage]) -> ChatMessage | TurnRow | None:
        """The message an empty query stands for: the last new one, else the last stored."""
        if new_messages:
            return new_messages[-1]
        if req.session_id is None:
            return None
        turns = self.sessions.state(req.namespace, req.session_id).turns
        return turns[-1] if turns else None

    def _history_state(self, req: AssembleRequest, new_messages: list[ChatMessage],
                       counter: TiktokenCounter, history_budget: int) -> HistoryState:
        if req.session_id is None:
            return HistoryState(turns=ephemeral_turns(
                [m.openai() | {"id": m.id, "timestamp": m.timestamp} for m in new_messages],
                counter))
        state = self.sessions.state(req.namespace, req.session_id,
                                    whole_within=history_budget, scope=req.recall_scope,
                                    user_id=None if new_messages else req.user_id)
        if counter.encoding_name != self.settings.encoding:
            state.turns = [t.__class__(**{**t.__dict__, "tokens": message_tokens(
                t.message(), counter)}) for t in state.turns]
        return state

    def _pack(
        self, req: AssembleRequest, budget: Budget, fixed: list[dict], query_message: dict,
        fixed_costs: list[int], history: HistoryResult, candidates: list[Candidate],
        duplicates: list[Candidate], documents_budget: int, counter: TiktokenCounter,
    ) -> AssembleResponse:
        # Chunks were counted with the configured encoding when they were stored.
        stored = counter if counter.encoding_name == self.settings.encoding else None
        items = [_document_item(c, rank, stored) for rank, c in enumerate(candidates, start=1)]
        block = pack_block(DOCUMENTS_HEADER, items, max(documents_budget, 0), counter,
                           role=req.documents_role,
                           min_partial_tokens=self.settings.min_partial_tokens)
        documents_message = ({"role": req.documents_role, "content": block.content}
                             if block.content else None)

        messages = [*fixed]
        if history.summary_message:
            messages.append(history.summary_message)
        # Earlier turns before the recent ones: history reads in conversation order.
        if history.recalled_message:
            messages.append(history.recalled_message)
        messages.extend(history.window_messages)
        if documents_message:
            messages.append(documents_message)
        messages.append(query_message)

        # Every message's cost was counted exactly when it was built; only the framing (role,
        # name marker) is separated out here, so no message is encoded again.
        def content(messages: list[dict], tokens: int) -> int:
            return tokens - sum(message_framing(m, counter) for m in messages)

        summary = [history.summary_message] if history.summary_message else []
        recalled = [history.recalled_message] if history.recalled_message else []
        documents = [documents_message] if documents_message else []
        usage = Usage(
            system=content(fixed, sum(fixed_costs[:-1])),
            summary=content(summary, history.summary_tokens),
            history=content(history.window_messages, history.window_tokens),
            recalled=content(recalled, history.recalled_tokens),
            documents=content(documents, block.tokens),
            query=content([query_message], fixed_costs[-1]),
            total=REPLY_PRIMING + sum(fixed_costs) + history.tokens + block.tokens,
            budget=budget.tokens,
        )
        usage.overhead = usage.total - (usage.system + usage.summary + usage.history
                                        + usage.recalled + usage.documents + usage.query)
        dropped = list(history.dropped)
        dropped += [Dropped(kind="document", id=f"{c.chunk.doc_id}#{c.chunk.ord}",
                            reason="near_duplicate", tokens=c.chunk.tokens) for c in duplicates]
        dropped += [Dropped(kind="document", id=item.key, reason="over_budget", tokens=tokens)
                    for item, tokens in block.dropped]
        used = [
            UsedDocument(id=p.item.payload.chunk.doc_id, chunk=p.item.payload.chunk.ord,
                         chunks=p.item.payload.chunk_ords,
                         rank=n, score=p.item.payload.score, tokens=p.tokens,
                         truncated=p.truncated, title=p.item.payload.chunk.title,
                         dense_rank=p.item.payload.dense_rank,
                         lexical_rank=p.item.payload.lexical_rank)
            for n, p in enumerate(sorted(block.items, key=lambda p: p.item.order), start=1)
        ]
        # The stable prefix is named by a digest of its content, not remembered per process:
        # any replica computes the same digest for the same prefix, and a caller compares it
        # with the one it was given last time.
        prefix_digest = prefix_unchanged = None
        if req.session_id is not None:
            prefix_digest = hashlib.blake2b(repr((
                fixed, history.summary_message, history.recalled_message,
                history.window_messages)).encode(), digest_size=16).hexdigest()
            if req.previous_prefix_digest is not None:
                prefix_unchanged = prefix_digest == req.previous_prefix_digest
        return AssembleResponse(
            namespace=req.namespace, session_id=req.session_id, model=req.model,
            encoding=counter.encoding_name,
            messages=[OutputMessage.model_validate(m) for m in messages], usage=usage,
            documents=used, history_turn_ids=[t.id for t in history.window],
            recalled_turn_ids=[t.id for t in history.recalled if t.origin is None],
            recalled_other_turns=[OtherTurn(session_id=t.origin.session_id, turn_id=t.id)
                                  for t in history.recalled if t.origin is not None],
            summary_through=history.summary_through if history.summary_message else 0,
            dropped=dropped, prefix_digest=prefix_digest, prefix_unchanged=prefix_unchanged,
            warnings=budget.warnings,
            timings_ms={})


def _document_item(candidate: Candidate, rank: int,
                   stored: TiktokenCounter | None) -> BlockItem:
    """One entry per document: its shown chunks joined in document order, and its best chunk
    alone to stand in when they do not fit whole. `stored`: the block's counter when the
    chunks' stored token counts are in its encoding."""
    chunk = candidate.chunk
    key = f"{chunk.doc_id}#{chunk.ord}"
    chunk_tokens = chunk.tokens if stored is not None else None
    if not candidate.parts:
        return BlockItem(key=key, text=chunk.text, rank=rank, order=rank, cuttable=True,
                         head=_document_head(candidate), payload=candidate,
                         text_tokens=chunk_tokens)
    alone = replace(candidate, parts=())
    fallback = BlockItem(key=key, text=chunk.text, rank=rank, order=rank, cuttable=True,
                         head=_document_head(alone), payload=alone, text_tokens=chunk_tokens)
    text, tokens = joined_parts(candidate.parts, stored)
    return BlockItem(key=key, text=text, rank=rank, order=rank, cuttable=True,
                     head=_document_head(candidate), payload=candidate, fallback=fallback,
                     text_tokens=tokens)


def _served(response: AssembleResponse, timings: dict[str, float],
            started: float) -> AssembleResponse:
    """A cached response with this request's own timings."""
    response.timings_ms = timings
    timings["total"] = round((time.perf_counter() - started) * 1000, 3)
    return response


def _document_head(candidate: Candidate) -> Callable[[int], str]:
    chunk = candidate.chunk
    title = f" — {chunk.title}" if chunk.title else ""
    ords = candidate.chunk_ords
    parts = f"chunk {ords[0]}" if len(ords) == 1 else "chunks " + ", ".join(map(str, ords))

    def head(number: int) -> str:
        return f"[{number}] {chunk.doc_id} ({parts}){title}\n"

    return head
