"""`contextd serve`: the HTTP service on uvicorn, optionally seeded with the sample corpus.

    $ contextd serve --host 127.0.0.1 --port 8000 --data-dir indexes --sample --log-format json

The model loads once, in the warm-up thread, while uvicorn already answers /healthz; with
`--sample` the same thread then ingests `samples/` into namespace `default` if it is empty
and prints a ready-to-paste curl command.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shlex
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from uvicorn.supervisors import Multiprocess

from contextd.auth.keys import KeyRing, KeyStore
from contextd.engine import Engine
from contextd.errors import InvalidRequest
from contextd.loaders import read_documents
from contextd.profiles import ConfigWatcher
from contextd.settings import CONFIG_ENV, Settings
from contextd.store.files import file_lock, private_dir

log = logging.getLogger("contextd.serve")

# Shipped inside the package, so `contextd serve --sample` works from an installed wheel.
SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"
SAMPLE_NAMESPACE = "default"


def ingest_samples(engine: Engine, folder: Path = SAMPLES_DIR,
                   namespace: str = SAMPLE_NAMESPACE) -> int:
    """Ingest the .md files of `folder` into `namespace` unless it already has documents.

    Returns the number of documents ingested (0 when the namespace was not empty).

        >>> ingest_samples(Engine("indexes"))  # doctest: +SKIP
        5
    """
    if engine.registry.exists(namespace) and engine.registry.get(namespace).info()["documents"]:
        return 0
    if not folder.is_dir():
        log.warning("no sample corpus at %s; namespace %r stays empty", folder, namespace)
        return 0
    docs = list(read_documents(folder))
    if docs:
        engine.upsert_documents(docs, namespace=namespace)
    return len(docs)


def curl_example(host: str, port: int, api_key: bool = False) -> str:
    """A ready-to-paste curl command for the default namespace's assemble route; with
    `api_key`, it sends the key from $CONTEXTD_API_KEY (never the key itself).

        >>> print(curl_example("127.0.0.1", 8000).splitlines()[0])
        curl -s http://127.0.0.1:8000/v1/namespaces/default/assemble \\
    """
    # A query with no session: running it twice gives the same answer (a session's messages
    # would be appended again on each run).
    body = {"query": "How does contextd rank retrieved chunks?", "max_tokens": 1000}
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    lines = [f"curl -s http://{shown_host}:{port}/v1/namespaces/default/assemble \\",
             "  -H 'Content-Type: application/json' \\"]
    if api_key:
        lines.append('  -H "Authorization: Bearer $CONTEXTD_API_KEY" \\')
    lines.append(f"  -d {shlex.quote(json.dumps(body))} \\")
    lines.append("  | python3 -m json.tool")
    return "\n".join(lines)


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only.

        >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0")
        (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything


def check_listen_address(host: str, keys: KeyRing, insecure: bool = False) -> None:
    """Refuse a non-loopback `host` when no API key exists, unless `insecure`.

        >>> check_listen_address("127.0.0.1", KeyRing())
        >>> check_listen_address("0.0.0.0", KeyRing(legacy_key="s3cret"))
    """
    if insecure or is_loopback(host) or keys.configured():
        return
    raise InvalidRequest(
        f"refusing to listen on {host} without an API key: anyone who can reach it could "
        "read and delete every namespace. Create a key (`contextd keys create --role admin "
        "--namespace '*'`), set CONTEXTD_API_KEY or CONTEXTD_API_KEYS, listen on 127.0.0.1, "
        "or pass --insecure to serve openly anyway")


def serve(settings: Settings | None = None, *, sample: bool = False,
          insecure: bool = False, config_file: str | Path | None = None) -> None:
    """Run the service until interrupted; SIGINT/SIGTERM let in-flight requests finish.

    `settings` (default: `Settings.from_env()`, i.e. CONTEXTD_* variables and the config file)
    give the interface, port, data directory, API keys, worker threads and processes and
    logging; contextd and uvicorn log through one handler in `settings.log_format`. Without any
    API key it listens only on loopback unless `insecure`. Profiles are reloaded from
    `config_file` (default: CONTEXTD_CONFIG) when it changes, and on SIGHUP (with several
    worker processes, SIGHUP restarts them one after another), without a restart.

        >>> serve(Settings.from_env(port=8000), sample=True)  # doctest: +SKIP
    """
    import uvicorn

    from contextd.logs import configure_logging

    settings = settings or Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    keys = _keys(settings)
    check_listen_address(settings.host, keys, insecure)
    if not keys.configured():
        log.warning("no API key exists: every route is open to whoever reaches %s",
                    settings.host)
    config_file = config_file or os.environ.get(CONFIG_ENV) or None
    if settings.http_workers > 1:
        if keys.store is not None:
            keys.store.close()
        _serve_workers(settings, sample, config_file)
        return
    app, watcher = _app(settings, keys, sample, config_file)
    # One worker process: the model and indexes live in this process; concurrency comes from
    # the app's thread pool and the query micro-batcher. log_config=None: uvicorn's loggers
    # keep no handlers of their own and propagate to the one configure_logging set up.
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                    log_config=None, timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    finally:
        if watcher is not None:
            watcher.stop()


# Seconds uvicorn gives in-flight requests at shutdown.
SHUTDOWN_GRACE_S = 30
# Hands each worker process of `contextd serve` its settings and options (see `worker_app`).
WORKER_ENV = "_CONTEXTD_SERVE_WORKER"


def _keys(settings: Settings) -> KeyRing:
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    return KeyRing(settings.api_keys, legacy_key=api_key, store=KeyStore(settings.data_dir))


def _app(settings: Settings, keys: KeyRing, sample: bool, config_file: str | Path | None,
         banner_once: Path | None = None) -> tuple[Any, ConfigWatcher | None]:
    """The app of one serving process, and the watcher of its config file (if any). With
    `banner_once`, only the first process to create that file prints the ready banner."""
    from contextd.server import create_app

    host, port = settings.host, settings.port
    engine = Engine(settings=settings)

    def on_ready(ready: Engine) -> None:
        if not sample:
            return
        # Worker processes start together: one ingests, the others wait, then find it done.
        data_dir = Path(settings.data_dir)
        private_dir(data_dir)
        with file_lock(data_dir / ".samples.lock"):
            count = ingest_samples(ready)
        if count:
            log.info("ingested %d sample documents into namespace %r", count, SAMPLE_NAMESPACE)
        if banner_once is None or _created(banner_once):
            shown = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
            print("\ncontextd is ready. Try:\n\n"
                  + curl_example(host, port, settings.api_key is not None)
                  + f"\n\nor open {shown}/inspect to see where the tokens go, and {shown}/docs "
                  "for the API.\n", flush=True)

    watcher = None
    if config_file:
        watcher = ConfigWatcher(Path(config_file), engine.reload_profiles,
                                interval_s=settings.profiles_poll_s)
        watcher.start()
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    app = create_app(engine, api_key=api_key, keys=keys, on_ready=on_ready,
                     worker_threads=settings.http_threads,
                     max_body_bytes=settings.max_body_bytes)
    return app, watcher


def _created(path: Path) -> bool:
    """Create `path`; False if it exists already (another process came first)."""
    try:
        path.touch(exist_ok=False)
    except FileExistsError:
        return False
    return True


def _serve_workers(settings: Settings, sample: bool, config_file: str | Path | None) -> None:
    """`settings.http_workers` processes on one port, each with its own engine over the
    one data directory (or PostgreSQL store), as replicas would; uvicorn's supervisor
    restarts a worker that dies. /metrics adds up all of them (see contextd.server.metrics)."""
    import uvicorn

    from contextd.server.metrics import MULTIPROC_ENV

    values = settings.model_dump(mode="json")
    values.update({name: value.get_secret_value() for name, value in settings
                   if isinstance(value, SecretStr)})  # the dump masks them
    shared = tempfile.mkdtemp(prefix="contextd-metrics-")
    os.environ[WORKER_ENV] = json.dumps({
        "settings": values, "sample": sample,
        "config_file": str(config_file) if config_file else None,
        "banner_once": str(Path(shared) / "ready-banner")})  # beside the metrics, wiped after
    os.environ[MULTIPROC_ENV] = shared
    log.info("serving with %d worker processes", settings.http_workers)
    config = uvicorn.Config(f"{__name__}:worker_app", factory=True, host=settings.host,
                            port=settings.port, workers=settings.http_workers,
                            log_level=settings.log_level, log_config=None,
                            timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    try:
        _Workers(config).run()
    finally:
        os.environ.pop(WORKER_ENV, None)
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(shared, ignore_errors=True)


def _listening_socket(host: str, port: int) -> socket.socket:
    """A socket listening on (host, port) beside others bound with SO_REUSEPORT."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # small responses wait on delayed acknowledgements (40 ms a request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidRequest(f"cannot listen on {host}:{port} ({exc.strerror}): stop what "
                             "listens there, or choose another --port or --host") from exc
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


# Connections the kernel queues for a worker before it accepts them (uvicorn's default).
LISTEN_BACKLOG = 2048


class _Workers(Multiprocess):
    """uvicorn's supervisor (restarts a worker that dies; SIGHUP replaces them one by
    one), with a listening socket of its own for each worker, bound with SO_REUSEPORT:
    the kernel spreads new connections over the workers. On one shared socket the worker
    that wakes first accepts every connection waiting, so 8 clients that connect at once
    may all land on one worker and leave the other idle."""

    def __init__(self, config: Any) -> None:
        self._handed: list[socket.socket] = []
        first = _listening_socket(config.host, config.port)
        self._port = first.getsockname()[1]  # port 0 picks one; every worker shares it
        super().__init__(config, sockets=[])
        self._spare: socket.socket | None = first
        log.info("listening on %s:%d, a socket for each worker", config.host, self._port)

    @property  # type: ignore[override]
    def sockets(self) -> list[socket.socket]:
        """Read each time uvicorn starts a worker: a socket of that worker's own."""
        sock, self._spare = self._spare, None
        sock = sock or _listening_socket(self.config.host, self._port)
        self._handed.append(sock)
        return [sock]

    @sockets.setter
    def sockets(self, value: list[socket.socket]) -> None:
        pass

    def _close_handed(self) -> None:
        # The started worker holds its own copy; the supervisor's would keep a share of
        # the connections waiting for nobody once that worker exits.
        for sock in self._handed:
            sock.close()
        self._handed.clear()

    def init_processes(self) -> None:
        super().init_processes()
        self._close_handed()

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self._close_handed()

    def restart_all(self) -> None:
        super().restart_all()
        self._close_handed()


def worker_app() -> Any:
    """The app of one worker process of `contextd serve` with `http_workers` > 1; uvicorn
    calls it in each process, which gets its settings from the serving one."""
    from contextd.logs import configure_logging

    spec = json.loads(os.environ[WORKER_ENV])
    settings = Settings(**spec["settings"])
    configure_logging(settings.log_level, settings.log_format)
    app, watcher = _app(settings, _keys(settings), spec["sample"], spec["config_file"],
                        Path(spec["banner_once"]))
    if watcher is not None:
        # The profiles as the file has them now: it may have changed since the supervisor
        # read it (an edit, then SIGHUP; a worker started again after a crash).
        watcher.reload_now()
    return app
