"""gunicorn config: `gunicorn -c deploy/gunicorn.conf.py` runs receiver + delivery worker.

Reads the leadrelay YAML from $LEADRELAY_CONFIG (default ./connectors.yaml).
- 2 processes x 16 threads fits a small (1-2 vCPU) machine; requests wait only for one
  group commit, so a 10 s timeout stays under the providers' 5-10 s delivery limits.
  A request thread spends much of its time waiting for that commit, and the requests
  waiting together share it: under the ingest benchmark's load, 16 threads against 8
  made groups of 14 events instead of 8 and cost 12% less CPU per event
  (benchmarks/README.md).
- The delivery worker runs as threads inside every gunicorn process (claims are safe
  across processes); set LEADRELAY_WORKER=0 to only receive and run `connectors worker`
  elsewhere (the compose file does that).
- Prometheus multiprocess mode: each process writes samples to PROMETHEUS_MULTIPROC_DIR
  and /metrics aggregates them.
"""

from __future__ import annotations

import os
import shutil
import tempfile

# Must exist before prometheus_client is first imported (it picks its storage then);
# emptied here, in the master, so counts start from zero with every start.
_metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), "leadrelay-metrics")
)
shutil.rmtree(_metrics_dir, ignore_errors=True)
os.makedirs(_metrics_dir, exist_ok=True)

from leadrelay.core.app.server import gunicorn_options  # noqa: E402

_options = gunicorn_options(
    bind=os.environ.get("LEADRELAY_BIND", "0.0.0.0:8000"),
    workers=int(os.environ.get("LEADRELAY_PROCESSES", "2")),
    threads=int(os.environ.get("LEADRELAY_THREADS", "16")),
    timeout=int(os.environ.get("LEADRELAY_TIMEOUT", "10")),
)
globals().update(_options)
wsgi_app = "leadrelay.core.app.wsgi:app"

_RUN_WORKER = os.environ.get("LEADRELAY_WORKER", "1") not in ("0", "false", "no")


def on_starting(server):
    # Refuse a demo secret on a reachable address, then migrate once, before forking.
    import sys

    from leadrelay.core.app.config import load_config
    from leadrelay.core.app.safety import PublishedSecretRefused, bind_host, startup_warnings
    from leadrelay.core.store.store import Store

    config = load_config()
    try:
        for warning in startup_warnings(config, bind_host(_options["bind"])):
            print(f"WARNING: {warning}", file=sys.stderr, flush=True)
    except PublishedSecretRefused as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    store = Store(config.store)
    store.migrate()
    store.close()


def post_worker_init(worker):
    if _RUN_WORKER:
        from leadrelay.core.app.wsgi import runtime

        runtime.start_worker()


def worker_exit(server, worker):
    from leadrelay.core.app.wsgi import runtime

    runtime.stop()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
