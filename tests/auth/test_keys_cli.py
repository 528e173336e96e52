"""`contextd keys create|list|revoke`, the key store's files, and `serve`'s refusal to listen
beyond loopback without a key."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from contextd.auth import KeyRing, KeySpec, KeyStore, hash_secret
from contextd.cli import main
from contextd.server.serve import check_listen_address


def test_keys_create_list_revoke_round_trip(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    assert main(["keys", "create", "--role", "write", "--namespace", "acme-*", "--namespace",
                 "shared", "--max-namespaces", "3", "--data-dir", data]) == 0
    out, err = capsys.readouterr()
    made = json.loads(out)
    assert made["secret"].startswith(f"ctxd_{made['id']}_") and "only this once" in err
    assert (made["role"], made["namespaces"], made["max_namespaces"]) == (
        "write", ["acme-*", "shared"], 3)

    store = KeyStore(data)
    key = store.authenticate(made["secret"])
    assert key is not None and key.allows_namespace("acme-x") and not key.allows_namespace("b")
    assert store.authenticate(made["secret"] + "x") is None
    raw = (Path(data) / "keys.sqlite3").read_bytes()
    assert made["secret"].encode() not in raw  # only the hash is kept
    assert hash_secret(made["secret"]).encode() in raw
    assert stat.S_IMODE((Path(data) / "keys.sqlite3").stat().st_mode) == 0o600

    assert main(["keys", "list", "--json", "--data-dir", data]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(k["id"], k["revoked"]) for k in listed] == [(made["id"], None)]
    assert made["secret"] not in json.dumps(listed)

    assert main(["keys", "revoke", made["id"], "--data-dir", data]) == 0
    capsys.readouterr()
    assert store.authenticate(made["secret"]) is None
    assert KeyRing(store=store).configured()  # revoking the last key locks, not opens
    assert main(["keys", "list", "--data-dir", data]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["keys", "revoke", made["id"], "--data-dir", data]) == 2
    assert "no live key" in capsys.readouterr().err
    store.close()


def test_keys_create_rejects_a_bad_namespace_rule(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--role", "read", "--namespace", "a*b",
                 "--data-dir", str(tmp_path)]) == 2
    assert "prefix ending in '*'" in capsys.readouterr().err


def test_serve_refuses_a_public_address_without_keys(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONTEXTD_API_KEY", raising=False)
    monkeypatch.delenv("CONTEXTD_API_KEYS", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0" in err and "--insecure" in err


def test_listen_address_rules() -> None:
    nobody = KeyRing()
    for host in ("127.0.0.1", "::1", "localhost", "127.8.0.1"):
        check_listen_address(host, nobody)
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.org"):
        with pytest.raises(Exception, match="--insecure"):
            check_listen_address(host, nobody)
        check_listen_address(host, nobody, insecure=True)
        check_listen_address(host, KeyRing(legacy_key="s3cret"))
        check_listen_address(host, KeyRing([KeySpec(id="k", hash=hash_secret("s"),
                                                    role="read", namespaces=["*"])]))
