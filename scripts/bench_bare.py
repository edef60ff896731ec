"""The baseline of ``make bench``: a bare Flask app answering a constant string.

Served by the same gunicorn settings as the portal (``gunicorn scripts.bench_bare:app``), so
the benchmark's ratios say what the portal costs over Flask and gunicorn themselves.
"""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return "ok"
