"""Profiles: deterministic weighted assignment, the split over 10,000 sessions, a request's own
profile, each profile assembling with its own settings, and reload without a restart (a call,
a changed config file, SIGHUP)."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from contextd import Engine
from contextd.cli import main
from contextd.errors import InvalidRequest
from contextd.profiles import ConfigWatcher, ProfileRouter, profile_weights, split_point
from contextd.settings import Settings

TINY = Path(__file__).parents[1] / "data" / "tiny-beir"


def router(profiles: dict) -> ProfileRouter:
    return ProfileRouter(Settings(profiles=profiles), lambda name, settings: settings)


def test_assignment_is_deterministic_across_routers_and_processes() -> None:
    a, b = router({"canary": {"weight": 30}}), router({"canary": {"weight": 30}})
    keys = [f"session-{n}" for n in range(500)]
    assert [a.assign(k) for k in keys] == [b.assign(k) for k in keys]
    # The hash is fixed (blake2b), not Python's per-process salted hash().
    assert split_point("session-42") == split_point("session-42")
    assert {a.assign(k) for k in keys} == {"canary", "default"}


def test_split_over_ten_thousand_sessions_is_within_tolerance() -> None:
    r = router({"canary": {"weight": 10}})
    assert profile_weights(Settings(profiles={"canary": {"weight": 10}})) == {
        "canary": 10.0, "default": 90.0}
    counts = Counter(r.assign(f"user-{n}:chat") for n in range(10_000))
    assert abs(counts["canary"] / 10_000 - 0.10) < 0.015
    three = router({"default": {"weight": 2}, "a": {"weight": 1}, "b": {"weight": 1}})
    counts = Counter(three.assign(f"s{n}") for n in range(10_000))
    for name, share in (("default", 0.5), ("a", 0.25), ("b", 0.25)):
        assert abs(counts[name] / 10_000 - share) < 0.02, counts


def test_zero_weights_send_everything_to_default_and_named_profiles_still_serve() -> None:
    r = router({"default": {"weight": 0}, "shadow": {"weight": 0, "mmr_lambda": 0.5}})
    assert {r.assign(f"s{n}") for n in range(200)} == {"default"}
    assert r.get("shadow").settings.mmr_lambda == 0.5
    with pytest.raises(InvalidRequest, match="unknown profile 'nope'"):
        r.get("nope")


def test_bad_profiles_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="profile 'x': mmr_lambda"):
        Settings(profiles={"x": {"mmr_lambda": 3}})
    with pytest.raises(ValueError, match="bogus"):
        Settings(profiles={"x": {"bogus": 1}})
    with pytest.raises(ValueError, match="profile name"):
        Settings(profiles={"Bad Name": {}})


def seeded(make_engine: Callable[..., Engine], **settings: object) -> Engine:
    engine = make_engine(**settings)
    engine.upsert_documents([{"id": f"d{n}", "text": f"Refunds take {n + 3} days. " * 10}
                             for n in range(4)])
    engine.append_messages("s1", [{"role": "user", "content": "I returned the blue kettle."},
                                  {"role": "assistant", "content": "Thanks, noted."}])
    return engine


def test_each_profile_assembles_with_its_own_settings(make_engine: Callable[..., Engine]) -> None:
    engine = seeded(make_engine, profiles={"nohistory": {"weight": 0, "history_share": 0.0}})
    base = engine.assemble(query="refund", max_tokens=400, session_id="s1")
    other = engine.assemble(query="refund", max_tokens=400, session_id="s1",
                            profile="nohistory")
    assert base.profile == "default" and other.profile == "nohistory"
    assert base.usage.history > 0 and other.usage.history == 0
    with pytest.raises(InvalidRequest, match="unknown profile"):
        engine.assemble(query="refund", max_tokens=400, profile="missing")


def test_every_profile_caches_under_keys_of_its_own(make_engine: Callable[..., Engine]) -> None:
    canary = {"weight": 0, "mmr_lambda": 0.5}
    engine = seeded(make_engine, profiles={"canary": canary})
    ask = {"query": "refund", "max_tokens": 400, "routing_key": "u1"}
    first = engine.assemble(**ask)
    assert first.profile == "default" and engine.assemble(**ask).cache.hit
    # The same request, now split to the canary: the default's entry is not served to it...
    engine.reload_profiles(Settings(profiles={"default": {"weight": 0},
                                              "canary": {**canary, "weight": 100}}))
    moved = engine.assemble(**ask)
    assert moved.profile == "canary" and not moved.cache.hit
    # ...and the canary caches too.
    again = engine.assemble(**ask)
    assert again.profile == "canary" and again.cache.hit
    assert again.assembly_id == moved.assembly_id
    # Its values changed under the same name: what the old values assembled is not served.
    engine.reload_profiles(Settings(profiles={"default": {"weight": 0},
                                              "canary": {**canary, "weight": 100,
                                                         "mmr_lambda": 0.6}}))
    changed = engine.assemble(**ask)
    assert changed.profile == "canary" and not changed.cache.hit
    # Back on the default profile, its own entry is still there.
    engine.reload_profiles(Settings(profiles={"canary": canary}))
    back = engine.assemble(**ask)
    assert back.profile == "default" and back.cache.hit and back.assembly_id == first.assembly_id


def test_a_profile_can_turn_the_cache_off(make_engine: Callable[..., Engine]) -> None:
    engine = seeded(make_engine, profiles={"fresh": {"weight": 0, "cache_enabled": False}})
    ask = {"query": "refund", "max_tokens": 400, "profile": "fresh"}
    engine.assemble(**ask)
    assert not engine.assemble(**ask).cache.hit
    assert engine.cache.core.counts()["disabled"] == 2
    engine.assemble(query="refund", max_tokens=400)
    assert engine.assemble(query="refund", max_tokens=400).cache.hit


def test_a_session_stays_on_its_profile_and_the_usage_log_says_which(
        make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    engine = seeded(make_engine, data_dir=None, profiles={"canary": {"weight": 50}})
    names = {engine.assemble(query=f"refund {n}", max_tokens=300, session_id="s1").profile
             for n in range(5)}
    assert len(names) == 1
    keyed = Counter(engine.assemble(query="refund", max_tokens=300, routing_key=f"u{n}").profile
                    for n in range(40))
    assert set(keyed) == {"canary", "default"}
    logged = [json.loads(line)["profile"]
              for line in (tmp_path / "data" / "usage.jsonl").read_text().splitlines()]
    assert Counter(logged[5:]) == keyed


def test_reload_without_restart(make_engine: Callable[..., Engine]) -> None:
    engine = seeded(make_engine, profiles={"canary": {"weight": 0, "mmr_lambda": 0.4}})
    assert engine.assemble(query="refund", max_tokens=300, session_id="s1").profile == "default"
    engine.reload_profiles(Settings(profiles={"canary": {"weight": 100}}))
    assert engine.profiles.weights() == {"canary": 100.0, "default": 0.0}
    assert engine.assemble(query="refund", max_tokens=300, session_id="s1").profile == "canary"
    assert engine.profiles.get("canary").settings.mmr_lambda == engine.settings.mmr_lambda


def write_config(path: Path, weight: int) -> None:
    path.write_text(f'[profiles.canary]\nweight = {weight}\nmmr_lambda = 0.6\n',
                    encoding="utf-8")
    # A distinct mtime even on coarse-grained file systems.
    stamp = path.stat().st_mtime + weight
    os.utime(path, (stamp, stamp))


def test_a_changed_config_file_is_reloaded_and_a_bad_one_is_not(
        make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    config = tmp_path / "contextd.toml"
    write_config(config, 0)
    engine = seeded(make_engine, profiles=Settings.from_env({}, config_file=config).profiles)
    watcher = ConfigWatcher(config, engine.reload_profiles, interval_s=0)
    assert watcher.check() is False  # unchanged
    write_config(config, 100)
    assert watcher.check() is True
    assert engine.assemble(query="refund", max_tokens=300, session_id="s1").profile == "canary"
    config.write_text("[profiles.canary]\nweight = -1\n", encoding="utf-8")
    os.utime(config, (1e9, 1e9))
    assert watcher.check() is False  # refused: the profiles stay as they were
    assert engine.profiles.weights()["canary"] == 100.0


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="SIGHUP is POSIX")
def test_sighup_reloads(make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    config = tmp_path / "contextd.toml"
    write_config(config, 0)
    engine = seeded(make_engine)
    previous = signal.getsignal(signal.SIGHUP)
    try:
        ConfigWatcher(config, engine.reload_profiles, interval_s=0).start()
        write_config(config, 100)
        os.kill(os.getpid(), signal.SIGHUP)  # the handler runs before the next bytecode
        assert engine.profiles.weights()["canary"] == 100.0
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_eval_compare_prints_both_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CONTEXTD_EMBEDDER", "hash")
    config = tmp_path / "contextd.toml"
    config.write_text("[profiles.lexical_heavy]\ndense_weight = 0.0\n", encoding="utf-8")
    argv = ["--config", str(config), "--data-dir", str(tmp_path / "data"), "--quiet"]
    assert main(["eval", "compare", "beir", str(TINY), "--profiles", "default,lexical_heavy",
                 "--out", str(tmp_path / "cmp.json"), *argv]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| metric | default | lexical_heavy |"
    report = json.loads((tmp_path / "cmp.json").read_text())
    assert set(report["profiles"]) == {"default", "lexical_heavy"}
    assert main(["eval", "beir", str(TINY), "--profile", "lexical_heavy", *argv]) == 0
    assert capsys.readouterr().out.startswith("lexical_heavy hybrid, top 10: nDCG@10")
    assert main(["eval", "compare", "beir", str(TINY), "--profiles", "default,nope",
                 *argv]) == 2
    assert "unknown profile 'nope'" in capsys.readouterr().err
