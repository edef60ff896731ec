"""Full page or HTMX fragment from the same markup, with ``Vary: HX-Request``.

A page template includes its fragment, so an HTMX swap and a full load render the
same HTML for the swapped part.
"""

from __future__ import annotations

from typing import Any

from flask import Response, make_response, render_template

from portal.infra.extensions import htmx


def render(page: str, fragment: str, status: int = 200, **context: Any) -> Response:
    template = fragment if htmx else page
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    return response
