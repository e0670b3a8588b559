"""The baseline: a bare Flask endpoint that reads the body and answers 200, nothing else.

Served by `gunicorn -c deploy/gunicorn.conf.py benchmarks.bare_app:app`, so it runs
under exactly the server settings leadrelay runs under.
"""

from __future__ import annotations

from flask import Flask, Response, request

app = Flask(__name__)

_ACCEPTED = '{"status": "accepted"}'


@app.post("/webhooks/<source>")
def webhook(source: str) -> Response:
    request.get_data(cache=False)
    return Response(_ACCEPTED, status=200, mimetype="application/json")


@app.get("/healthz")
def healthz() -> Response:
    return Response('{"status": "ok"}', status=200, mimetype="application/json")
