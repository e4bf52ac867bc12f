"""How the operator inbox web app is served: ``/app/`` with its CSP, its modules as files.

What the page does is tested in a real browser (tests/browser/test_inbox.py)."""

from __future__ import annotations

import re
from importlib import resources

import httpx
import pytest

APP_FILES = resources.files("widget_assets").joinpath("app")


async def test_page_has_a_strict_policy(client: httpx.AsyncClient) -> None:
    response = await client.get("/app/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["img-src"] == "'self' data: https:"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    # Nothing inline for the policy to refuse: scripts and styles are files of this server.
    page = response.text
    assert re.findall(r"<script\b[^>]*>", page) == ['<script type="module" src="/app/app.js">']
    assert "<style" not in page and " style=" not in page
    assert re.search(r"\son[a-z]+=", page) is None  # no inline event handlers


@pytest.mark.parametrize("path", ["/app", "/app/index.html"])
async def test_other_spellings_redirect_to_the_page(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 308
    assert response.headers["location"] == "/app/"


async def test_every_module_is_served(client: httpx.AsyncClient) -> None:
    names = [f.name for f in APP_FILES.iterdir() if f.name.endswith((".js", ".css"))]
    assert "app.js" in names and "app.css" in names
    for name in names:
        response = await client.get(f"/app/{name}")
        assert response.status_code == 200, name
        assert response.content == APP_FILES.joinpath(name).read_bytes()
        kind = "text/css" if name.endswith(".css") else "javascript"
        assert kind in response.headers["content-type"], name


@pytest.mark.parametrize(
    "path", ["/app/missing.js", "/app/../server/app.py", "/app/%2e%2e/README.md"]
)
async def test_nothing_else_is_served(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["success"] is False
