"""Front-end files installed from npm, served by the app itself (no CDN)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, send_from_directory
from flask.typing import ResponseReturnValue

from portal.infra.config import ROOT

bp = Blueprint("assets", __name__)

NODE_MODULES = ROOT / "node_modules"
OWN = ROOT / "portal" / "web" / "static"

# Public name -> file under node_modules (or the app's own static folder).
FILES: dict[str, Path] = {
    "htmx.min.js": NODE_MODULES / "htmx.org" / "dist" / "htmx.min.js",
    "pico.min.css": NODE_MODULES / "@picocss" / "pico" / "css" / "pico.min.css",
    "pakiet.css": OWN / "pakiet.css",
    "pakiet.js": OWN / "pakiet.js",
    "admin.css": OWN / "admin.css",
}


@bp.get("/assets/<name>")
def asset(name: str) -> ResponseReturnValue:
    path = FILES.get(name)
    if path is None or not path.is_file():
        abort(404)
    return send_from_directory(path.parent, path.name, max_age=7 * 24 * 3600)
