"""Static files (issue 20): fingerprinted addresses cached for a year, gzip for the browsers that take it, 304
for a file the browser has, a favicon instead of a 404 on every page, and nothing outside webapp/static."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.kit.assets import STATIC_DIR, asset_url
from tests.conftest import make_settings
from tests.web import serve


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    pair: tuple[FastAPI, httpx.AsyncClient]
    async with serve(make_settings(database_url)) as pair:
        yield pair[1]


async def test_a_fingerprinted_file_is_cached_for_good_and_sent_compressed(client: httpx.AsyncClient) -> None:
    url = asset_url("app.css")
    assert re.fullmatch(r"/static/app\.[0-9a-f]{8}\.css", url)
    response = await client.get(url, headers={"accept-encoding": "gzip"})
    assert response.status_code == 200 and response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["content-encoding"] == "gzip" and response.headers["content-type"].startswith("text/css")
    assert response.content == (STATIC_DIR / "app.css").read_bytes()  # httpx undid the gzip
    assert int(response.headers["content-length"]) < len(response.content) / 2

    again = await client.get(url, headers={"if-none-match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


async def test_an_old_or_bare_address_still_works_but_is_checked_each_time(client: httpx.AsyncClient) -> None:
    for url in ("/static/app.00000000.js", "/static/app.js"):
        response = await client.get(url, headers={"accept-encoding": "identity"})
        assert response.status_code == 200 and "content-encoding" not in response.headers
        assert response.headers["cache-control"] == "public, max-age=0, must-revalidate"
        assert response.content == (STATIC_DIR / "app.js").read_bytes()


async def test_missing_files_and_paths_out_of_the_folder_are_not_found(client: httpx.AsyncClient) -> None:
    for url in ("/static/nope.css", "/static/../app/config.py", "/static/%2e%2e/pyproject.toml", "/static/guides"):
        response = await client.get(url)
        assert response.status_code == 404, url


async def test_the_favicon_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/favicon.ico")
    assert response.status_code == 200 and response.headers["content-type"].startswith("image/svg+xml")
    page = await client.get("/login")
    assert f'<link rel="icon" href="{asset_url("icon.svg")}"' in page.text
    assert '<meta name="description" content="' in page.text
