"""Documents may be embedded by another runtime of the query model: ingestion uses it, queries
and turns never do, and an embedder of another model is refused."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from contextd import Engine, Settings
from contextd.embedding import HashEmbedder


class Counting(HashEmbedder):
    def __init__(self, dim: int = 384) -> None:
        super().__init__(dim)
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        return super().embed(texts)


def test_documents_are_embedded_by_the_document_embedder_and_queries_are_not(
        tmp_path: Path) -> None:
    queries, documents = Counting(), Counting()
    with Engine(tmp_path, Settings(embedder="hash", batch_wait_ms=0), embedder=queries,
                document_embedder=documents) as engine:
        engine.upsert_documents([{"id": "tide", "title": "Tides",
                                  "text": "Tidal power turns the tides into electricity."}])
        assert documents.texts and all("Tidal power" in t for t in documents.texts)
        assert queries.texts == []
        found = engine.search("tidal electricity", top_k=3).hits
        assert [h.id for h in found] == ["tide"]  # the two embedders' vectors search together
        engine.assemble(query="how does tidal power work?", session_id="s",
                        messages=[{"role": "user", "content": "tell me about tides"}],
                        max_tokens=500)
        assert "how does tidal power work?" in queries.texts
        assert "tell me about tides" in " ".join(queries.texts)  # turns: the query embedder
        assert not any("tides" in t and "tell me" in t for t in documents.texts)


def test_a_document_embedder_of_another_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="use one model for both"):
        Engine(tmp_path, Settings(embedder="hash"), embedder=HashEmbedder(384),
               document_embedder=HashEmbedder(256))
