"""The PDFs customers download, kept per process by what decides their bytes.

A download's bytes follow from facts that never change once written: the stored rendering
(rows are never updated: a new note writes a new one) and, when a national e-invoicing
channel covers the document, the state of its submission (the channel's number, offline
mode). Reading those facts is one narrow statement (``portal.web.invoices.COPY_FACTS``), in
the same round trip as the user (``session_user.along_with_user``); when they are the ones
of a copy this process served before, its bytes and ETag come from here, and the stored
PDF is neither fetched nor stamped again (stamping a KSeF copy renders the document again:
tens of milliseconds). A new key goes the long way and is stored.

The cache holds at most ``PDF_CACHE_BYTES`` (LRU; 0 switches it off). Each gunicorn worker
has its own: nothing is shared, so nothing can go stale across processes.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import NamedTuple

from flask import current_app


class Copy(NamedTuple):
    body: bytes
    etag: str


def etag_of(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]


class CopyCache:
    """A least-recently-used map from a copy's facts to its bytes, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, Copy] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Copy | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: Hashable, body: bytes) -> Copy:
        copy = Copy(body, etag_of(body))
        if len(body) > self.max_bytes:
            return copy  # larger than the whole cache (or the cache is off)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= len(old.body)
            self._items[key] = copy
            self._size += len(body)
            while self._size > self.max_bytes:
                _key, evicted = self._items.popitem(last=False)
                self._size -= len(evicted.body)
        return copy

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size(self) -> int:
        return self._size


def copy_cache() -> CopyCache:
    """This app's cache in this process (made at the first download)."""
    cache = current_app.extensions.get("pakiet.copy_cache")
    if cache is None:
        cache = current_app.extensions.setdefault(
            "pakiet.copy_cache", CopyCache(int(current_app.config["PDF_CACHE_BYTES"]))
        )
    assert isinstance(cache, CopyCache)
    return cache
