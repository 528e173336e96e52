"""Shared fixtures: engines on a temporary data directory with the fast, deterministic
hash embedder; the real bundled model only in tests marked `model`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from contextd import Engine, Settings  # noqa: E402
from contextd.embedding import HashEmbedder  # noqa: E402

DATA = Path(__file__).parent / "data"
# A real PostgreSQL (pgserver), started only by the tests that ask for it.
pytest_plugins = ["postgres_server"]


@pytest.fixture
def make_engine(tmp_path: Path) -> Iterator[Callable[..., Engine]]:
    """Engines on `tmp_path` (or a given dir) with the hash embedder; closed at teardown."""
    engines: list[Engine] = []

    def make(data_dir: Path | None = None, **settings: object) -> Engine:
        settings.setdefault("batch_wait_ms", 0)
        engine = Engine(data_dir or tmp_path / "data", Settings(embedder="hash", **settings),
                        embedder=HashEmbedder())
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_engines(request: pytest.FixtureRequest, tmp_path: Path,
                    make_engine: Callable[..., Engine]) -> Callable[..., Engine]:
    """Engines over one store of each backend, each with its own settings (several share the
    store, as replicas do)."""

    def make(**settings: object) -> Engine:
        if request.param == "postgresql":
            settings["store"] = request.getfixturevalue("postgres_url")
        return make_engine(tmp_path / "data", **settings)

    return make
