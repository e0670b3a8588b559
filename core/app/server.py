"""Running leadrelay: the receiver under gunicorn, with the delivery worker beside it.

`connectors serve` and `deploy/gunicorn.conf.py` share these pieces. The delivery worker
runs as threads inside each gunicorn worker process (claims are safe across processes on
SQLite and PostgreSQL alike), so one `gunicorn -c deploy/gunicorn.conf.py` both receives
and delivers. `--no-worker` / LEADRELAY_WORKER=0 leaves delivery to `connectors worker`. Beside the
delivery worker runs the retention purge's housekeeping loop (app/housekeeping.py).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from leadrelay.core.app.config import Config
from leadrelay.core.app.housekeeping import Housekeeping
from leadrelay.core.delivery.worker import Worker
from leadrelay.core.ingest.receiver import create_app
from leadrelay.core.logs import fields
from leadrelay.core.store.store import Store

log = logging.getLogger("leadrelay.server")


@dataclass
class Runtime:
    """One process's receiver app, store and (optionally) delivery worker and purge."""

    config: Config
    store: Store
    app: Flask
    worker: Worker | None = field(default=None)
    housekeeping: Housekeeping | None = field(default=None)

    @classmethod
    def build(cls, config: Config, *, store: Store | None = None) -> Runtime:
        store = store or Store(config.store)
        app = create_app(config, store)
        if config.console is not None:
            # Imported only here: without a `console:` section nothing of it is loaded.
            from leadrelay.core.app.console import register_console

            register_console(app, config, store)
        return cls(config=config, store=store, app=app)

    def start_worker(self) -> Worker:
        """Start the delivery worker and the housekeeping loop in this process."""
        if self.worker is None:
            self.worker = Worker(self.config, self.store)
            self.worker.start()
        if self.housekeeping is None:
            self.housekeeping = Housekeeping(self.config, self.store)
            self.housekeeping.start()
        return self.worker

    def stop(self) -> None:
        if self.housekeeping is not None:
            self.housekeeping.stop()
            self.housekeeping = None
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        self.store.close()


def gunicorn_options(
    *,
    bind: str,
    workers: int = 1,
    threads: int = 8,
    timeout: int = 30,
) -> dict[str, Any]:
    """Gunicorn settings sized for a small machine; request timeouts stay under the
    providers' 5-10 s delivery limits because a request only waits for one commit.

    Each process reads requests with waitress (`waitress_worker`): a slow client holds a
    buffer in its event loop, not one of the `threads` that run the app."""
    return {
        "bind": bind,
        "workers": workers,
        "worker_class": "leadrelay.core.app.waitress_worker.WaitressWorker",
        "threads": threads,
        "timeout": timeout,
        "graceful_timeout": 20,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
    }


def _console_ready(config: Config, host: str, port: int) -> Config:
    """A console without users gets a one-time password now, in the master (every worker
    process then accepts it); printed, never logged."""
    from leadrelay.core.app.console import with_one_time_password

    config, password = with_one_time_password(config, host)
    if password is not None:
        print(
            f"\nConsole: http://{host}:{port}/console/  user: admin  one-time password: "
            f"{password}\n(valid until this server stops; set console.users to keep a login)\n",
            file=sys.stderr,
            flush=True,
        )
    return config


def serve(config: Config, *, host: str, port: int, threads: int, run_worker: bool) -> None:
    """Blocking: gunicorn master + one worker process serving the receiver."""
    from gunicorn.app.base import BaseApplication

    if config.console is not None:
        config = _console_ready(config, host, port)

    # Closed before gunicorn forks: a SQLite connection must not live on in the workers.
    migrator = Store(config.store)
    try:
        migrator.migrate()
    finally:
        migrator.close()
    holder: dict[str, Runtime] = {}

    def post_worker_init(_worker: Any) -> None:
        runtime = holder["runtime"]
        if run_worker:
            runtime.start_worker()

    def worker_exit(_server: Any, _worker: Any) -> None:
        runtime = holder.get("runtime")
        if runtime is not None:
            runtime.stop()

    class _App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options = gunicorn_options(bind=f"{host}:{port}", threads=threads)
            options.update(post_worker_init=post_worker_init, worker_exit=worker_exit)
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Flask:
            holder["runtime"] = Runtime.build(config)
            return holder["runtime"].app

    log.info(
        "serving",
        extra=fields(
            url=f"http://{host}:{port}",
            store=config.masked_store_url(),
            sources=sorted(config.sources),
            connectors=sorted(config.connectors),
            worker=run_worker,
        ),
    )
    _App().run()
