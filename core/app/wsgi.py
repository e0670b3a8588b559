"""WSGI entry point for gunicorn: `leadrelay.core.app.wsgi:app`, config from $LEADRELAY_CONFIG.

The app is built when a gunicorn worker process imports this module (after the fork),
so each process gets its own database connections. deploy/gunicorn.conf.py starts the
delivery worker in the same process through `runtime.start_worker()`.
"""

from __future__ import annotations

import os

from leadrelay.core import logs
from leadrelay.core.app.config import load_config
from leadrelay.core.app.server import Runtime

logs.configure(os.environ.get("LEADRELAY_LOG_LEVEL", "INFO"))
runtime = Runtime.build(load_config())
app = runtime.app
