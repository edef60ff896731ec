"""Front-end files installed from npm, served by the app itself (no CDN).

Pages link each file under a fingerprinted name, ``pakiet.<digest>.css`` (the first 12 hex
digits of its SHA-256, :func:`asset_url`): such a name always means the same bytes, so it
is cached for a year and marked ``immutable``; a changed file gets a new name, and the
pages that link it ask for it at once. A fingerprint that is not the file's current one
(a page rendered before a deploy) still gets the file, cached briefly. The plain name
(``/assets/pakiet.css``) keeps working, cached for a day and revalidated after.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from flask import Blueprint, abort, current_app, send_from_directory
from flask.typing import ResponseReturnValue

from portal.infra.config import data_path
from portal.web.helpers import path_for

bp = Blueprint("assets", __name__)

OWN = Path(__file__).resolve().parent / "static"

# Public name -> file under node_modules (an installed wheel: its copy under
# portal/_shipped/static, see data_path), or the app's own static folder.
FILES: dict[str, Path] = {
    "htmx.min.js": data_path("node_modules/htmx.org/dist/htmx.min.js", "static/htmx.min.js"),
    "pico.min.css": data_path("node_modules/@picocss/pico/css/pico.min.css", "static/pico.min.css"),
    "pakiet.css": OWN / "pakiet.css",
    "pakiet.js": OWN / "pakiet.js",
    "admin.css": OWN / "admin.css",
}

YEAR = 365 * 24 * 3600
DAY = 24 * 3600
FINGERPRINTED = re.compile(r"(?P<stem>.+)\.(?P<digest>[0-9a-f]{12})\.(?P<ext>[a-z]+)")

_digests: dict[tuple[Path, int], str] = {}  # (file, mtime) -> digest
_names: dict[str, str] = {}  # public name -> fingerprinted name (production: once)


def digest(path: Path) -> str:
    key = (path, path.stat().st_mtime_ns)
    if key not in _digests:
        _digests[key] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return _digests[key]


def fingerprinted(name: str) -> str:
    """``pakiet.css`` -> ``pakiet.<digest>.css``; in debug mode a file changed on disk gets
    its new name at once, in production the name is worked out once per process."""
    if name in _names and not current_app.debug:
        return _names[name]
    stem, _, ext = name.rpartition(".")
    _names[name] = f"{stem}.{digest(FILES[name])}.{ext}"
    return _names[name]


def asset_url(name: str) -> str:
    """The URL a page links a front-end file by (a template global)."""
    return path_for("assets.asset", name=fingerprinted(name))


@bp.get("/assets/<name>")
def asset(name: str) -> ResponseReturnValue:
    max_age, immutable = DAY, False
    match = FINGERPRINTED.fullmatch(name)
    if match and f"{match['stem']}.{match['ext']}" in FILES:
        name = f"{match['stem']}.{match['ext']}"
        current = FILES[name].is_file() and match["digest"] == digest(FILES[name])
        # An older or unknown fingerprint (a page from before a deploy): today's file, briefly.
        max_age, immutable = (YEAR, True) if current else (300, False)
    path = FILES.get(name)
    if path is None or not path.is_file():
        abort(404)
    response = send_from_directory(path.parent, path.name, max_age=max_age)
    if immutable:
        response.cache_control.immutable = True
    return response
