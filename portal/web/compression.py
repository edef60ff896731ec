"""gzip for text answers when the client accepts it (issue 26, point 4).

HTML pages and fragments, CSS, JavaScript, JSON and XML above ``MIN_SIZE`` bytes are sent
gzip-compressed to a client whose ``Accept-Encoding`` allows gzip; everything else (PDFs,
images, small answers, 304s, streamed answers) goes as it is. Every answer of a type that
may be compressed says ``Vary: Accept-Encoding``, so no cache hands the compressed one to a
client that did not ask for it. A compressed answer's ETag becomes weak (the bytes differ
from the uncompressed answer's), which keeps conditional requests working: If-None-Match
compares weakly.

The front-end files (``portal/web/assets.py``) are the same bytes for every request: their
compressed form is kept per process, keyed by the file's ETag. Pages are compressed per
request at level 6 (the 57 KB invoices list of 120 rows: 4.7 KB, 0.33 ms of CPU).
"""

from __future__ import annotations

import gzip

from flask import Flask, Response, request

MIN_SIZE = 500
LEVEL = 6
TYPES = frozenset(
    {
        "text/html",
        "text/css",
        "text/plain",
        "text/javascript",
        "application/javascript",
        "application/json",
        "application/xml",
        "image/svg+xml",
    }
)


def accepts_gzip() -> bool:
    for part in request.headers.get("Accept-Encoding", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            q = params.strip().removeprefix("q=").strip() if "q=" in params else "1"
            try:
                return float(q) > 0
            except ValueError:
                return False
    return False


_files: dict[str, bytes] = {}  # ETag of a front-end file -> its compressed bytes


def _compressed_file(etag: str, body: bytes) -> bytes:
    packed = _files.get(etag)
    if packed is None:
        if len(_files) >= 64:  # a handful of files; bounded all the same
            _files.clear()
        packed = _files[etag] = gzip.compress(body, LEVEL, mtime=0)
    return packed


def compress(response: Response) -> Response:
    """``response`` gzip-compressed if its type, size and the client allow it."""
    if response.mimetype not in TYPES:
        return response
    response.vary.add("Accept-Encoding")
    if (
        response.status_code != 200
        or (response.is_streamed and not response.direct_passthrough)  # a file is read whole
        or "Content-Encoding" in response.headers
        or request.method == "HEAD"
        or not accepts_gzip()
    ):
        return response
    etag, weak = response.get_etag()
    cacheable = response.direct_passthrough and etag is not None  # a file: the same bytes
    response.direct_passthrough = False
    body = response.get_data()
    if len(body) < MIN_SIZE:
        return response
    packed = _compressed_file(etag, body) if cacheable and etag else gzip.compress(body, LEVEL)
    response.set_data(packed)
    response.headers["Content-Encoding"] = "gzip"
    if etag is not None and not weak:
        response.set_etag(etag, weak=True)
    return response


def init_app(app: Flask) -> None:
    app.after_request(compress)
