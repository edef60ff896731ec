"""Compression and caching where users feel it (issue 26, point 4): text answers go gzip'd
to a client that accepts it, front-end files under fingerprinted names cached for a year."""

from __future__ import annotations

import gzip
import re

import pytest
from werkzeug.security import generate_password_hash

from portal.infra.extensions import db
from portal.web import assets
from tests.conftest import PASSWORD, Auth
from tests.web.test_sql_per_page import make_account

GZIP = {"Accept-Encoding": "gzip, deflate, br"}


def without_csrf_token(page: bytes) -> bytes:
    """``page`` with its CSRF tokens blanked: the forms' fields and the one htmx sends as a
    header (``hx-headers`` on the body)."""
    page = re.sub(rb'(name="csrf_token"[^>]*value=")[^"]+"', rb'\1-"', page)
    return re.sub(rb'("X-CSRFToken": ")[^"]+"', rb'\1-"', page)


def linked_assets(html: str) -> list[str]:
    return re.findall(r'(?:href|src)="(/assets/[^"]+)"', html)


def test_a_page_goes_gzip_compressed_to_a_client_that_accepts_it(client):
    plain = client.get("/login")
    packed = client.get("/login", headers=GZIP)
    assert plain.status_code == packed.status_code == 200
    assert "Content-Encoding" not in plain.headers
    assert packed.headers["Content-Encoding"] == "gzip"
    assert (
        "Accept-Encoding" in packed.headers["Vary"] and "Accept-Encoding" in plain.headers["Vary"]
    )
    # The same page: only the CSRF token may differ (it is signed with the second it was
    # made in, and the two requests can fall on either side of a second).
    assert without_csrf_token(gzip.decompress(packed.data)) == without_csrf_token(plain.data)
    assert len(packed.data) < len(plain.data) / 2
    # The security headers are the same on both.
    assert packed.headers["Content-Security-Policy"] == plain.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    "accept",
    ["", "identity", "gzip;q=0", "br", "deflate"],
    ids=["none", "identity", "q0", "br", "deflate"],
)
def test_no_compression_unless_gzip_is_accepted(client, accept):
    answer = client.get("/login", headers={"Accept-Encoding": accept})
    assert "Content-Encoding" not in answer.headers
    assert b"<html" in answer.data


def test_a_pdf_and_a_304_go_as_they_are(app, client):
    with app.app_context():
        make_account("gz", 1, generate_password_hash(PASSWORD), 1)
        db.session.commit()
    assert Auth(client).login("gz@firma.example.com").status_code == 302
    link = re.search(r'href="(/invoices/[^"]+\.pdf)"', client.get("/invoices").text)
    assert link
    pdf = client.get(link.group(1), headers=GZIP)
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    assert "Content-Encoding" not in pdf.headers
    again = client.get(link.group(1), headers={**GZIP, "If-None-Match": pdf.headers["ETag"]})
    assert again.status_code == 304 and "Content-Encoding" not in again.headers
    # A fragment of a signed-in page is compressed like a page.
    fragment = client.get("/package", headers={**GZIP, "HX-Request": "true"})
    assert fragment.headers["Content-Encoding"] == "gzip"
    assert b"package" in gzip.decompress(fragment.data)


def test_pages_link_fingerprinted_assets_cached_for_a_year(app, client):
    links = linked_assets(client.get("/login").text)
    assert links and all(
        re.fullmatch(r"/assets/.+\.[0-9a-f]{12}\.(css|js)", link) for link in links
    )
    for link in links:
        with client.get(link, headers=GZIP) as answer:
            assert answer.status_code == 200, link
            cache = answer.cache_control
            assert cache.max_age == 365 * 24 * 3600 and cache.immutable, link
            assert answer.headers["Content-Encoding"] == "gzip"
            etag = answer.headers["ETag"]
            name = link.rsplit("/", 1)[1]
            stem, _digest, ext = name.rsplit(".", 2)
            assert gzip.decompress(answer.data) == assets.FILES[f"{stem}.{ext}"].read_bytes()
        # Revalidation works on the compressed answer (a weak ETag).
        with client.get(link, headers={**GZIP, "If-None-Match": etag}) as again:
            assert again.status_code == 304, link


def test_an_old_fingerprint_or_a_plain_name_gets_the_file_briefly_cached(client):
    with client.get("/assets/pakiet.000000000000.css") as old:
        assert old.status_code == 200
        assert old.cache_control.max_age == 300 and not old.cache_control.immutable
    with client.get("/assets/pakiet.css") as plain:
        assert plain.status_code == 200
        assert plain.cache_control.max_age == 24 * 3600 and not plain.cache_control.immutable
    assert client.get("/assets/nothing.000000000000.css").status_code == 404
    assert client.get("/assets/nothing.css").status_code == 404


def test_the_links_every_page_carries_are_worked_out_once_per_mount_point(app):
    """helpers.path_for (the header's links, the front-end files): url_for's path, kept
    per process; an app mounted under a prefix gets its own paths, not the cached ones."""
    from flask import url_for

    from portal.web.helpers import path_for

    with app.test_request_context("/"):
        assert path_for("invoices.page") == url_for("invoices.page") == "/invoices"
        assert path_for("assets.asset", name="x.css") == "/assets/x.css"
    with app.test_request_context("/", base_url="http://localhost/portal/"):
        assert path_for("invoices.page") == url_for("invoices.page") == "/portal/invoices"
    with app.test_request_context("/"):
        assert path_for("invoices.page") == "/invoices"
