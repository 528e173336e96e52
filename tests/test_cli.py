"""The `contextd` command: settings from flags, environment and config file; read-only commands
never create; one-file ingestion; namespaces and sessions commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contextd import Engine
from contextd.cli import build_parser, main
from contextd.embedding import HashEmbedder
from contextd.settings import Settings
from contextd.version import __version__


@pytest.fixture(autouse=True)
def hash_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONTEXTD_DATA_DIR", "CONTEXTD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONTEXTD_EMBEDDER", "hash")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    file = tmp_path / "tokens.md"
    file.write_text("# Tokens\n\nBudgets are counted exactly with the model's tokenizer.\n",
                    encoding="utf-8")
    return file


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"contextd {__version__}"


def test_ingest_one_markdown_file_then_search(tmp_path: Path, notes: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    code, out, _ = run(capsys, "ingest", str(notes), "--data-dir", str(data), "--quiet")
    assert code == 0 and json.loads(out)["upserted"] == 1
    code, out, _ = run(capsys, "search", "tokenizer budgets", "--data-dir", str(data), "--json")
    hit = json.loads(out)["hits"][0]
    assert code == 0 and hit["id"] == "tokens.md" and hit["title"] == "tokens"


def test_data_dir_from_environment_and_config_file(tmp_path: Path, notes: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    env_dir, file_dir, flag_dir = tmp_path / "env", tmp_path / "file", tmp_path / "flag"
    config = tmp_path / "contextd.toml"
    config.write_text(f'data_dir = "{file_dir}"\n', encoding="utf-8")
    assert run(capsys, "ingest", str(notes), "--config", str(config), "--quiet")[0] == 0
    assert (file_dir / "namespaces" / "default").is_dir()
    monkeypatch.setenv("CONTEXTD_CONFIG", str(config))
    monkeypatch.setenv("CONTEXTD_DATA_DIR", str(env_dir))
    assert run(capsys, "ingest", str(notes), "--quiet")[0] == 0  # environment over file
    assert (env_dir / "namespaces" / "default").is_dir()
    assert run(capsys, "ingest", str(notes), "--quiet", "--data-dir", str(flag_dir))[0] == 0
    assert (flag_dir / "namespaces" / "default").is_dir()


@pytest.mark.parametrize("argv", [
    ["search", "anything"], ["assemble", "anything"], ["namespaces"], ["namespaces", "list"],
    ["sessions"], ["sessions", "list"], ["sessions", "show", "s1"],
])
def test_read_only_commands_on_a_missing_data_dir_create_nothing(
        argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    typo = tmp_path / "typo"
    code, out, err = run(capsys, *argv, "--data-dir", str(typo))
    assert code == 2 and out == ""
    assert f"data directory {typo} does not exist" in err
    assert not typo.exists()


def test_read_only_commands_on_a_missing_namespace(tmp_path: Path, notes: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    run(capsys, "ingest", str(notes), "--data-dir", data, "--namespace", "docs", "--quiet")
    for argv in (["search", "q"], ["assemble", "q"], ["sessions", "list"]):
        code, _, err = run(capsys, *argv, "--data-dir", data, "--namespace", "typo")
        assert code == 2 and "namespace 'typo' does not exist" in err, argv
    # The default namespace is not made up either when nothing was put in it.
    code, _, err = run(capsys, "search", "q", "--data-dir", data)
    assert code == 2 and "namespace 'default' does not exist" in err
    assert not (tmp_path / "data" / "namespaces" / "typo").exists()
    assert not (tmp_path / "data" / "namespaces" / "default").exists()


def test_namespaces_and_sessions_commands(tmp_path: Path, notes: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    with Engine(data, Settings(embedder="hash"), embedder=HashEmbedder()) as engine:
        engine.upsert_documents([{"id": "a", "text": "Alpha."}], namespace="team")
        engine.append_messages("chat-1", [{"role": "user", "content": "Hello there"},
                                          {"role": "assistant", "content": "Hi!"}],
                               namespace="team")
        engine.append_messages("chat-2", [{"role": "user", "content": "Second"}],
                               namespace="team")
    d = ["--data-dir", str(data)]
    code, out, _ = run(capsys, "namespaces", "--json", *d)
    assert code == 0 and [n["name"] for n in json.loads(out)] == ["team"]
    code, out, _ = run(capsys, "sessions", "list", "--namespace", "team", "--json", *d)
    assert {(s["session_id"], s["turns"]) for s in json.loads(out)} == {("chat-1", 2),
                                                                         ("chat-2", 1)}
    # Options before the action count as well.
    code, out, _ = run(capsys, "sessions", "--namespace", "team", "list", *d)
    assert code == 0 and "chat-1  2 turns" in out
    code, out, _ = run(capsys, "sessions", "show", "chat-1", "--namespace", "team", *d)
    assert code == 0 and "--- 1 user" in out and "Hello there" in out
    assert run(capsys, "sessions", "delete", "chat-1", "--namespace", "team", *d)[0] == 0
    code, _, err = run(capsys, "sessions", "show", "chat-1", "--namespace", "team", *d)
    assert code == 2 and "session 'chat-1' does not exist" in err
    assert run(capsys, "namespaces", "delete", "team", *d)[0] == 0
    code, out, _ = run(capsys, "namespaces", "list", *d)
    assert code == 0 and out == ""
    code, _, err = run(capsys, "namespaces", "delete", "team", *d)
    assert code == 2 and "namespace 'team' does not exist" in err


def test_bad_setting_or_config_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.toml"
    config.write_text("data_dir = 'x'\ndata_directory = 'y'\n", encoding="utf-8")
    code, _, err = run(capsys, "namespaces", "--config", str(config))
    assert code == 2 and "unknown setting(s) data_directory" in err
    monkeypatch.setenv("CONTEXTD_PORT", "eighty")
    code, _, err = run(capsys, "namespaces", "--data-dir", str(tmp_path))
    assert code == 2 and "invalid setting: port" in err


def test_help_shows_defaults_for_every_option() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in ("search", "assemble", "ingest", "serve"):
        text = sub.choices[name].format_help()  # type: ignore[attr-defined]
        assert "--data-dir" in text and "(default: indexes" in text, name
    search = sub.choices["search"].format_help()  # type: ignore[attr-defined]
    assert "documents to return (a document's chunks count once) (default: 10)" in " ".join(
        search.split())
    assert "(default: hybrid)" in " ".join(search.split())
    serve = " ".join(sub.choices["serve"].format_help().split())  # type: ignore[attr-defined]
    assert "(default: text;" in serve and "CONTEXTD_LOG_FORMAT" in serve
