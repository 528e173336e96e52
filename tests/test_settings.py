"""Settings: flag (override) > CONTEXTD_* variable > TOML config file > default; secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from contextd.errors import InvalidRequest
from contextd.settings import Settings


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_precedence_override_then_environment_then_file_then_default(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", 'port = 7001\nhost = "0.0.0.0"\nchunk_tokens = 128\n'
                   'data_dir = "/srv/file"\n')
    environ = {"CONTEXTD_PORT": "7002", "CONTEXTD_DATA_DIR": "/srv/env"}
    settings = Settings.from_env(environ, config_file=config, data_dir="/srv/flag")
    assert settings.data_dir == Path("/srv/flag")  # flag over environment and file
    assert settings.port == 7002  # environment over file
    assert (settings.host, settings.chunk_tokens) == ("0.0.0.0", 128)  # file over default
    assert settings.fusion == "convex"  # default
    # An unset flag (None) leaves the field to the sources below it.
    assert Settings.from_env(environ, config_file=config, data_dir=None).data_dir == \
        Path("/srv/env")


def test_config_file_named_by_the_environment(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", 'embedder = "hash"\n')
    assert Settings.from_env({"CONTEXTD_CONFIG": str(config)}).embedder == "hash"
    assert Settings.from_env({}).embedder == "auto"


def test_unknown_keys_in_the_config_file_are_named(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", 'data_dir = "x"\nchunk_size = 3\nbogus = true\n')
    with pytest.raises(InvalidRequest, match="unknown setting.*bogus, chunk_size"):
        Settings.from_env({}, config_file=config)


def test_missing_or_malformed_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="does not exist"):
        Settings.from_env({}, config_file=tmp_path / "absent.toml")
    with pytest.raises(InvalidRequest, match="not valid TOML"):
        Settings.from_env({}, config_file=write(tmp_path / "bad.toml", "port = \n"))


def test_bad_values_from_any_source_fail_validation(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="port"):
        Settings.from_env({"CONTEXTD_PORT": "eighty"})
    with pytest.raises(ValidationError, match="log_format"):
        Settings.from_env({}, config_file=write(tmp_path / "c.toml", 'log_format = "xml"\n'))


def test_construction_in_code_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTEXTD_CHUNK_TOKENS", "99")
    assert Settings().chunk_tokens == 256
    assert Settings(chunk_tokens=200).chunk_tokens == 200
    assert Settings.from_env().chunk_tokens == 99


def test_secrets_are_masked(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", 'summariser_api_key = "sk-from-file"\n')
    settings = Settings.from_env({"CONTEXTD_API_KEY": "s3cret-key"}, config_file=config)
    assert isinstance(settings.api_key, SecretStr)
    assert settings.api_key.get_secret_value() == "s3cret-key"
    assert settings.summariser_api_key.get_secret_value() == "sk-from-file"  # type: ignore
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert "s3cret-key" not in shown and "sk-from-file" not in shown
    assert Settings.from_env({"CONTEXTD_API_KEY": ""}).api_key is None  # empty means unset
