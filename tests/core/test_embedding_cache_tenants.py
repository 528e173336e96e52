"""The shared embedding cache gives no cross-tenant signal: `cached` counts only a
namespace's own reuse, and deleting a namespace purges the vectors only it contributed."""

from __future__ import annotations

from contextd import Engine
from contextd.store.embedding_cache import content_hash

TEXT = "The quarterly audit of the Lisbon office found three unpaid invoices."


def _cached_vectors(engine: Engine, text: str) -> int:
    cache = engine.registry.cache
    return len(cache.get(engine.embedder.model_id, [content_hash(text)]))


def test_upsert_of_another_tenants_text_reports_no_cache_hit(engine: Engine) -> None:
    first = engine.upsert_documents([{"id": "a", "text": TEXT}], namespace="tenant-a")
    assert (first.embedded, first.cached) == (1, 0)
    other = engine.upsert_documents([{"id": "a", "text": TEXT}], namespace="tenant-b")
    assert (other.embedded, other.cached) == (1, 0)
    # The same namespace storing the text again is a real, reportable reuse.
    again = engine.upsert_documents([{"id": "copy", "text": TEXT}], namespace="tenant-a")
    assert (again.embedded, again.cached) == (0, 1)


def test_embedded_and_cached_split_the_chunks(engine: Engine) -> None:
    engine.upsert_documents([{"id": "a", "text": TEXT}], namespace="tenant-a")
    result = engine.upsert_documents(
        [{"id": "x", "text": TEXT}, {"id": "y", "text": TEXT}, {"id": "z", "text": "New words."}],
        namespace="tenant-b")
    assert result.embedded + result.cached == result.chunks == 3
    assert (result.embedded, result.cached) == (2, 1)  # the repeat within the request only


def test_turns_follow_the_same_rule(engine: Engine) -> None:
    message = [{"role": "user", "content": TEXT}]
    engine.append_messages("s1", message, namespace="tenant-a")
    cache = engine.registry.cache
    model = engine.embedder.model_id
    assert cache.contributed(model, "tenant-a", [content_hash(TEXT)])
    assert not cache.contributed(model, "tenant-b", [content_hash(TEXT)])
    result = engine.upsert_documents([{"id": "a", "text": TEXT}], namespace="tenant-b")
    assert result.cached == 0


def test_deleting_a_namespace_purges_what_only_it_contributed(engine: Engine) -> None:
    shared = "A sentence both tenants store."
    engine.upsert_documents([{"id": "a", "text": TEXT}, {"id": "s", "text": shared}],
                            namespace="tenant-a")
    engine.upsert_documents([{"id": "s", "text": shared}], namespace="tenant-b")
    engine.append_messages("s1", [{"role": "user", "content": "only in a's session"}],
                           namespace="tenant-a")
    assert _cached_vectors(engine, TEXT) == 1
    engine.delete_namespace("tenant-a")
    assert _cached_vectors(engine, TEXT) == 0
    assert _cached_vectors(engine, "only in a's session") == 0
    assert _cached_vectors(engine, shared) == 1  # tenant-b still uses it
    # A namespace of the same name starts with no history in the cache.
    fresh = engine.upsert_documents([{"id": "s", "text": shared}], namespace="tenant-a")
    assert (fresh.embedded, fresh.cached) == (1, 0)
