"""Idempotency keys in the engine: a repeat writes nothing and answers as the first attempt,
another body under the same key is refused, a failed write stores no key, keys expire, and two
engines on one directory (two processes) honour each other's keys."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from contextd import Conflict, Engine, InvalidRequest
from contextd.store import idempotency
from contextd.store.idempotency import IdempotencyKey, IdempotencyKeyReused

HI = [{"role": "user", "content": "My order arrived broken."}]
DOC = [{"id": "faq", "text": "Refunds are issued within 14 days of a return."}]


def db(engine: Engine, namespace: str = "default") -> sqlite3.Connection:
    return sqlite3.connect(engine.settings.data_dir / "namespaces" / namespace
                           / "store.sqlite3")


def test_repeated_append_with_the_same_key_stores_the_turns_once(engine: Engine) -> None:
    first = engine.append_messages("s1", HI, idempotency_key="k-1")
    again = engine.append_messages("s1", HI, idempotency_key="k-1")
    assert again == first and first.turn_ids == ["turn-1"]
    assert len(engine.get_session("s1").turns) == 1
    # Without a key (or with a new one) the same messages are a new append.
    assert engine.append_messages("s1", HI, idempotency_key="k-2").turn_ids == ["turn-2"]
    assert engine.append_messages("s1", HI).turns == 3


def test_same_key_with_another_body_is_refused_and_writes_nothing(engine: Engine) -> None:
    engine.append_messages("s1", HI, idempotency_key="k-1")
    with pytest.raises(IdempotencyKeyReused, match="different request") as caught:
        engine.append_messages("s1", [{"role": "user", "content": "Other."}],
                               idempotency_key="k-1")
    assert caught.value.status == 422
    with pytest.raises(IdempotencyKeyReused):  # another session is another request too
        engine.append_messages("s2", HI, idempotency_key="k-1")
    with pytest.raises(IdempotencyKeyReused):  # and so is another operation
        engine.upsert_documents(DOC, idempotency_key="k-1")
    assert len(engine.get_session("s1").turns) == 1
    assert [s.session_id for s in engine.list_sessions()] == ["s1"]


def test_repeated_upsert_returns_the_first_result(engine: Engine) -> None:
    first = engine.upsert_documents(DOC, idempotency_key="u-1")
    assert first.upserted == 1
    # Without the key the same batch is "unchanged"; with it, the first answer comes back.
    assert engine.upsert_documents(DOC, idempotency_key="u-1") == first
    assert engine.upsert_documents(DOC).unchanged == 1
    # A batch that changed nothing is remembered too.
    unchanged = engine.upsert_documents(DOC, idempotency_key="u-2")
    engine.upsert_documents([{**DOC[0], "text": "Refunds take 30 days."}])
    assert engine.upsert_documents(DOC, idempotency_key="u-2") == unchanged
    assert engine.get_document("faq").text == "Refunds take 30 days."


def test_repeated_assemble_with_messages_appends_once(engine: Engine) -> None:
    request = {"query": "When is my refund?", "session_id": "s1", "messages": HI,
               "max_tokens": 500}
    key = IdempotencyKey("a-1")
    engine.assemble(request, idempotency_key=key)
    assert not key.replayed
    again = IdempotencyKey("a-1")
    response = engine.assemble(request, idempotency_key=again)
    assert again.replayed and len(engine.get_session("s1").turns) == 1
    assert any(m.content == HI[0]["content"] for m in response.messages)
    with pytest.raises(IdempotencyKeyReused):
        engine.assemble({**request, "query": "Something else?"}, idempotency_key="a-1")


def test_failed_write_stores_no_idempotency_record(engine: Engine) -> None:
    engine.append_messages("s1", [{"id": "t1", "role": "user", "content": "Hi"}])
    clash = [{"id": "t1", "role": "user", "content": "Hi again"}]
    for _ in range(2):  # the key was not kept: the repeat fails the same way, not a replay
        with pytest.raises(Conflict):
            engine.append_messages("s1", clash, idempotency_key="k-1")
    assert db(engine).execute("SELECT count(*) FROM idempotency").fetchone()[0] == 0


def test_idempotency_keys_expire_and_are_pruned(engine: Engine,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    engine.append_messages("s1", HI, idempotency_key="old")
    with db(engine) as conn:
        conn.execute("UPDATE idempotency SET created_at = ?",
                     (time.time() - idempotency.TTL_S - 1,))
    # Expired: the key is free again, and the write that records a key prunes the old one.
    assert engine.append_messages("s1", HI, idempotency_key="new").turns == 2
    assert [r[0] for r in db(engine).execute("SELECT key FROM idempotency")] == ["new"]
    assert engine.append_messages("s1", [{"role": "user", "content": "x"}],
                                  idempotency_key="old").turns == 3


def test_malformed_idempotency_key_is_rejected(engine: Engine) -> None:
    for bad in ("", "has space", "x" * 256, "é"):
        with pytest.raises(InvalidRequest, match="idempotency key"):
            engine.append_messages("s1", HI, idempotency_key=bad)
    assert engine.list_sessions() == []


def test_idempotency_keys_hold_across_engines_on_one_directory(
        make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    a, b = make_engine(tmp_path / "d"), make_engine(tmp_path / "d")
    first = a.append_messages("s1", HI, idempotency_key="k-1")
    assert b.append_messages("s1", HI, idempotency_key="k-1") == first
    # Racing repeats of one key from both engines: exactly one stores its turns.
    results, errors = [], []

    def append(engine: Engine) -> None:
        try:
            results.append(engine.append_messages("s2", HI, idempotency_key="race"))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(e,)) for e in (a, b, a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len({r.model_dump_json() for r in results}) == 1
    assert len(a.get_session("s2").turns) == 1
