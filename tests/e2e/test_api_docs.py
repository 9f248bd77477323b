"""/api/docs renders Swagger UI in a real browser under the app's own Content-Security-Policy."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import Shop, browser_page

pytestmark = pytest.mark.e2e


def test_api_docs_render_the_schema_without_breaking_the_csp(shop: Shop, browser: Browser) -> None:
    page, errors = browser_page(browser)
    page.goto(f"{shop.base_url}/api/docs")
    # The operations of the schema, drawn by Swagger UI's script: it loaded, ran and fetched /api/openapi.json.
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("vpnshop", timeout=20_000)
    expect(page.locator(".opblock-summary-path", has_text="/api/me").first).to_be_visible()
    # A CSP refusal is reported on the console; none may happen.
    assert errors == [], errors
    page.context.close()
