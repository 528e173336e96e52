"""Profiles: named configurations of assemble, side by side, with a weighted canary split.

A profile is the base settings with some of them changed (`Settings.profiles`, the
`[profiles.NAME]` tables of the config file): retrieval depth, fusion and its weights, MMR,
budget shares, cache on or off. Each gets its own retriever, ranker and memory shares over the
engine's one set of namespaces, sessions and embedder, so two profiles read the same data and
differ only in how they assemble.

A request that names a profile gets it. Otherwise the split sends it by weight, on a stable
hash of its session id (else its `routing_key`, else its query), so a conversation stays on one
profile and every replica sends it to the same one. `default` is the base settings; unless it
has a table of its own, its weight is what the others leave over to 100, so
`[profiles.canary] weight = 10` alone is a 90/10 split. Changing weights or values takes no
restart: `ProfileRouter.reload` swaps the whole set at once, and `contextd serve` calls it on
SIGHUP or when the config file changes (`ConfigWatcher`).

    >>> router = ProfileRouter(Settings(profiles={"canary": {"weight": 10}}), lambda n, s: s)
    >>> router.names(), router.weights()
    (['canary', 'default'], {'canary': 10.0, 'default': 90.0})
    >>> router.assign("session-42") == router.assign("session-42")
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from contextd.errors import InvalidRequest
from contextd.models import AssembleRequest
from contextd.settings import ProfileSpec, Settings, read_config

log = logging.getLogger("contextd")

DEFAULT = "default"
P = TypeVar("P")  # what a profile runs: the engine's assemble pipeline


def split_point(key: str) -> float:
    """A stable point in [0, 1) for `key`: the same on every process, run and replica.

        >>> 0 <= split_point("session-42") < 1
        True
    """
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=b"contextd-split").digest()
    return int.from_bytes(digest, "big") / 2.0**64


def profile_digest(settings: Settings) -> str:
    """A digest of every value a profile can change, as `settings` has them: the assemble
    cache keys by it, so a profile whose values change (a reload) never serves what the old
    values assembled, and two profiles with the same name on two configs never meet.

        >>> profile_digest(Settings()) == profile_digest(Settings(profiles={"a": {"weight": 5}}))
        True
        >>> profile_digest(Settings()) == profile_digest(Settings(mmr_lambda=0.5))
        False
    """
    values = {k: getattr(settings, k) for k in sorted(ProfileSpec.model_fields)
              if k != "weight"}
    blob = json.dumps(values, sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


def profile_weights(settings: Settings) -> dict[str, float]:
    """The weight of every profile, 'default' included (the rest to 100 when unlisted)."""
    weights = {name: spec.weight for name, spec in settings.profiles.items()}
    if DEFAULT not in weights:
        weights[DEFAULT] = max(0.0, 100.0 - sum(weights.values()))
    return dict(sorted(weights.items()))


@dataclass(frozen=True)
class Profile(Generic[P]):
    name: str
    weight: float
    settings: Settings
    runner: P


@dataclass(frozen=True)
class _ProfileSet(Generic[P]):
    profiles: dict[str, Profile[P]]
    bounds: list[tuple[float, str]]  # cumulative share up to each weighted profile


class ProfileRouter(Generic[P]):
    """Chooses the profile of each request; `build(name, settings)` makes what runs one.

        >>> router = ProfileRouter(Settings(), lambda name, s: s)
        >>> router.choose(AssembleRequest(query="q", max_tokens=100)).name
        'default'
    """

    def __init__(self, settings: Settings, build: Callable[[str, Settings], P],
                 default_runner: P | None = None) -> None:
        self._build = build
        self._default_runner = default_runner
        self._set = self._make(settings)
        self._lock = threading.Lock()

    def _make(self, settings: Settings) -> _ProfileSet[P]:
        weights = profile_weights(settings)
        profiles: dict[str, Profile[P]] = {}
        for name, weight in weights.items():
            profile_settings = settings.with_profile(name)
            reuse = (name == DEFAULT and profile_settings is settings
                     and self._default_runner is not None)
            runner = self._default_runner if reuse else self._build(name, profile_settings)
            profiles[name] = Profile(name, weight, profile_settings, runner)  # type: ignore[arg-type]
        total = sum(weights.values())
        bounds, running = [], 0.0
        for name, weight in weights.items():
            if weight > 0:
                running += weight / total
                bounds.append((running, name))
        return _ProfileSet(profiles, bounds)

    def names(self) -> list[str]:
        return sorted(self._set.profiles)

    def weights(self) -> dict[str, float]:
        return {name: p.weight for name, p in sorted(self._set.profiles.items())}

    def get(self, name: str) -> Profile[P]:
        """Profile `name`; InvalidRequest (a 422) naming the known ones otherwise."""
        current = self._set
        if name not in current.profiles:
            raise InvalidRequest(f"unknown profile {name!r}: use one of "
                                 f"{', '.join(sorted(current.profiles))}, or leave profile "
                                 "out to be assigned one")
        return current.profiles[name]

    def assign(self, key: str) -> str:
        """The profile the weighted split gives `key` (a session id or routing key)."""
        return self._assign(self._set, key)

    @staticmethod
    def _assign(current: _ProfileSet[P], key: str) -> str:
        if not current.bounds:
            return DEFAULT
        point = split_point(key)
        for bound, name in current.bounds:
            if point < bound:
                return name
        return current.bounds[-1][1]  # float rounding at the top end

    def choose(self, req: AssembleRequest) -> Profile[P]:
        """The request's own profile, else its share of the split."""
        requested = getattr(req, "profile", None)
        if requested:
            return self.get(requested)
        key = req.session_id or getattr(req, "routing_key", None) or req.query
        current = self._set  # one set throughout, whatever a reload does meanwhile
        return current.profiles[self._assign(current, key)]

    def reload(self, settings: Settings) -> None:
        """Take the profiles of `settings` from now on; requests running keep theirs. A set
        that fails to build leaves the current one in place (the error is raised)."""
        with self._lock:
            self._set = self._make(settings)
        log.info("profiles reloaded: %s", ", ".join(f"{n} {w:g}" for n, w in
                                                    self.weights().items()))


class ConfigWatcher:
    """Reloads profiles from the config file when it changes (polled every `interval_s`)
    and on SIGHUP; a file that does not parse is reported and the profiles stay as they were.

        >>> watcher = ConfigWatcher(Path("contextd.toml"), engine.reload_profiles)  # doctest: +SKIP
        >>> watcher.start()  # doctest: +SKIP
    """

    def __init__(self, path: Path, reload: Callable[[Settings], None],
                 settings_for: Callable[[Path], Settings] | None = None,
                 interval_s: float = 2.0) -> None:
        self.path = path
        self._reload = reload
        self._settings_for = settings_for or (lambda p: Settings.from_env(config_file=p))
        self.interval_s = interval_s
        self._seen = self._stamp()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _stamp(self) -> tuple[float, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    def check(self) -> bool:
        """Reload if the file changed since last seen; whether it did (and reloaded)."""
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        self._seen = stamp
        return self.reload_now()

    def reload_now(self) -> bool:
        try:
            read_config(self.path)  # names a bad key or bad TOML before anything changes
            self._reload(self._settings_for(self.path))
        except Exception as exc:  # noqa: BLE001 - a bad edit must not stop the service
            log.error("config file %s not reloaded, profiles unchanged: %s", self.path, exc)
            return False
        return True

    def start(self) -> None:
        """Watch in a daemon thread (if `interval_s` > 0) and reload on SIGHUP."""
        if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, lambda *_: self.reload_now())
        if self.interval_s > 0:
            self._thread = threading.Thread(target=self._run, name="contextd-config-watch",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check()

    def stop(self) -> None:
        self._stop.set()
