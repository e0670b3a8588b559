"""The baseline: a bare Flask endpoint that reads the body and answers 200, nothing else."""

from __future__ import annotations

from flask import Flask, Response, request

app = Flask(__name__)


@app.post("/webhooks/<source>")
def webhook(source: str) -> Response:
    request.get_data(cache=False)
    return Response('{"status":"accepted"}', status=200, mimetype="application/json")
