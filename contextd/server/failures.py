"""The failure log: every failed HTTP request, captured well enough to diagnose it.

One JSON line per 5xx (and per 4xx with `failure_log_client_errors`), in `failure_log`
(default `<data_dir>/failures.jsonl`, 0600, rotated like the usage log): time, request id,
method, route, status, problem type, the exception type of a crash, the namespace, profile
and query type asked for, the settings in force (every non-secret setting that differs from
its default, and a digest of them all), the request headers and a truncated copy of the body.
Secrets never reach the file: the Authorization, Cookie and API-key headers are replaced,
JSON keys that name a secret (`api_key`, `password`, `token`, ...) are replaced, and any
configured secret or the caller's bearer token found anywhere in the body is cut out. With
`failure_log_text` false, every text of the input (queries, messages, documents, system
prompts) is replaced by its length. `contextd report --failures` lists them.

    >>> recorder = FailureRecorder.from_settings(Settings(data_dir="indexes"))  # doctest: +SKIP
    >>> recorder.record(scope, 500, b'{"query": "q"}', 14, "internal", exc)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from contextd.jsonl_log import JsonlLog
from contextd.settings import Settings
from contextd.telemetry import DEFAULT_PROFILE, log_path, utc_now

log = logging.getLogger("contextd.server")

REDACTED = "[redacted]"
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie",
                            "x-api-key", "api-key"})
# JSON keys whose value is a secret wherever they appear in a body. `max_tokens` and
# `reserve_output_tokens` end in "tokens", not "token", so they stay.
SECRET_KEY = re.compile(r"(^|[_-])(api[_-]?key|apikey|key|password|passwd|secret|token|"
                        r"access[_-]?token|authorization|credentials?|bearer)$", re.I)
# String values kept when text is not: they say what was asked, not what was said. Every
# other string (queries, messages, documents, titles, metadata) is replaced by its length.
STRUCTURAL_KEYS = frozenset({"namespace", "session_id", "model", "query_type", "role", "id",
                             "tool_call_id", "type", "documents_role", "mode", "profile",
                             "previous_prefix_digest", "timestamp", "encoding"})
# Settings that are secrets, or hold key material.
SECRET_SETTINGS = frozenset({"api_key", "api_keys", "summariser_api_key"})


def settings_in_force(settings: Settings) -> tuple[dict[str, Any], str]:
    """The non-secret settings that differ from their defaults, and a digest of every
    non-secret setting, so two failures can be told to share a configuration or not.

        >>> settings_in_force(Settings(chunk_tokens=200, api_key="s3cret"))[0]
        {'chunk_tokens': 200}
    """
    values = settings.model_dump(mode="json", exclude=set(SECRET_SETTINGS))
    if values.get("summariser_url"):
        values["summariser_url"] = _without_userinfo(values["summariser_url"])
    defaults = Settings().model_dump(mode="json", exclude=set(SECRET_SETTINGS))
    changed = {k: v for k, v in values.items() if defaults.get(k) != v}
    digest = hashlib.blake2b(json.dumps(values, sort_keys=True).encode(),
                             digest_size=8).hexdigest()
    return changed, digest


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{REDACTED}@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def redact(value: Any, keep_text: bool, key: str | None = None) -> Any:
    """`value` (parsed JSON) with secret keys replaced and, unless `keep_text`, every string
    but the structural ones (ids, roles, namespace, model...) replaced by its length.

        >>> redact({"query": "hi", "api_key": "k", "max_tokens": 9}, keep_text=False)
        {'query': '[2 chars]', 'api_key': '[redacted]', 'max_tokens': 9}
    """
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and SECRET_KEY.search(k) and v is not None
                else redact(v, keep_text, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(item, keep_text, key) for item in value]
    if isinstance(value, str) and not keep_text and key not in STRUCTURAL_KEYS:
        return f"[{len(value)} chars]"
    return value


class FailureRecorder:
    """Writes failure records to a `JsonlLog`; a record that cannot be written is reported
    in the service log and never turns into another failure."""

    def __init__(self, log_file: JsonlLog, settings: Settings) -> None:
        self.log = log_file
        self.client_errors = settings.failure_log_client_errors
        self.keep_text = settings.failure_log_text
        self.max_input_bytes = settings.failure_log_input_bytes
        self.settings, self.settings_digest = settings_in_force(settings)
        self._base = settings.model_dump(mode="json", exclude={*SECRET_SETTINGS, "profiles"})
        self.secrets = [s.get_secret_value() for s in (settings.api_key,
                                                         settings.summariser_api_key)
                        if isinstance(s, SecretStr) and s.get_secret_value()]

    @classmethod
    def from_settings(cls, settings: Settings) -> FailureRecorder | None:
        """The recorder `settings` configure, or None when `failure_log` is off."""
        path = log_path(settings, settings.failure_log)
        if path is None:
            return None
        return cls(JsonlLog(path, settings.usage_log_max_bytes, settings.usage_log_backups),
                   settings)

    def wants(self, status: int) -> bool:
        """Whether a response of `status` is a failure to record."""
        return status >= 500 or (self.client_errors and status >= 400)

    def record(self, scope: Mapping[str, Any], status: int, body: bytes, body_bytes: int,
               problem_type: str | None, exc: BaseException | None = None) -> None:
        """Write the record of one failed request: `body` is its first bytes (at most
        `failure_log_input_bytes`), `body_bytes` its whole size."""
        headers, bearer = self._headers(scope)
        record: dict[str, Any] = {
            "time": utc_now(),
            "request_id": str(scope.get("state", {}).get("request_id", "")) or None,
            "method": scope.get("method"),
            "route": getattr(scope.get("route"), "path", None) or "unmatched",
            "path": scope.get("path"),
            "status": status,
            "type": problem_type or "unknown",
            "exception": type(exc).__name__ if exc is not None else None,
            # A message may quote the input, so it follows the text setting.
            "message": (self._scrub(str(exc)[:1000], bearer)
                        if exc is not None and self.keep_text else None),
            "namespace": (scope.get("path_params") or {}).get("namespace"),
            "profile": DEFAULT_PROFILE,
            "query_type": None,
            "settings": self.settings,
            "settings_digest": self.settings_digest,
            "headers": headers,
        }
        record.update(self._input(body, body_bytes, bearer))
        parsed = record.get("input")
        if isinstance(parsed, dict):
            record["namespace"] = record["namespace"] or parsed.get("namespace")
            record["profile"] = parsed.get("profile") or DEFAULT_PROFILE
            record["query_type"] = parsed.get("query_type")
        profile = scope.get("state", {}).get("profile")
        if profile is not None:  # the profile the request ran with, and what it changes
            record["profile"] = profile.name
            record["profile_settings"] = self._profile_changes(profile.settings)
        try:
            self.log.write(record)
        except OSError as exc_:
            log.error("failure log %s cannot be written: %s", self.log.path, exc_)

    def _profile_changes(self, settings: Settings) -> dict[str, Any]:
        values = settings.model_dump(mode="json", exclude={*SECRET_SETTINGS, "profiles"})
        return {k: v for k, v in values.items() if self._base.get(k) != v}

    def _headers(self, scope: Mapping[str, Any]) -> tuple[dict[str, str], str | None]:
        headers: dict[str, str] = {}
        bearer = None
        for raw_name, raw_value in scope.get("headers", []):
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            if name == "authorization":
                bearer = value.split(" ", 1)[-1].strip() or None
            headers[name] = REDACTED if name in SECRET_HEADERS else value[:512]
        return headers, bearer

    def _input(self, body: bytes, body_bytes: int, bearer: str | None) -> dict[str, Any]:
        # Secrets pasted into a body are cut out before anything else sees the text.
        text = self._scrub(body.decode("utf-8", errors="replace"), bearer)
        out: dict[str, Any] = {"input_bytes": body_bytes,
                               "input_truncated": body_bytes > len(body)}
        if not body:
            out["input"] = None
            return out
        if body_bytes <= len(body):
            try:
                out["input"] = redact(json.loads(text), self.keep_text)
                return out
            except json.JSONDecodeError:
                pass
        # Cut or not JSON: kept as text only when text may be kept, secret keys masked.
        out["input"] = (re.sub(r'("[^"]*(?:key|password|secret|token|authorization)"\s*:\s*)'
                               r'"[^"]*"', rf'\1"{REDACTED}"', text, flags=re.I)
                        if self.keep_text else None)
        return out

    def _scrub(self, text: str, bearer: str | None) -> str:
        for secret in [*self.secrets, *([bearer] if bearer else [])]:
            if len(secret) >= 4:
                text = text.replace(secret, REDACTED)
        return text

    def close(self) -> None:
        self.log.close()
