"""Every section of the admin on a 360 px phone, in real Chromium against the real demo process: each page the
sidebar links draws without sideways scrolling and without a script error (staff run the shop from a phone too;
ADMIN.md). Screenshots go to test-output/screenshots/admin-phone-<section>.png."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from app.admin.navigation import SECTIONS
from tests.e2e.conftest import Shop, browser_page, shot

pytestmark = pytest.mark.e2e

PHONE = {"width": 360, "height": 780}
# The widest element, so a failure names what sticks out rather than only that something does.
WIDEST = """() => {
  let widest = null;
  for (const el of document.querySelectorAll("body *")) {
    const box = el.getBoundingClientRect();
    if (box.right > window.innerWidth + 1 && !el.closest("[data-scroll-x], .table-scroll, .scroll-x")) {
      if (!widest || box.right > widest.right) widest = {tag: el.tagName, cls: el.className, right: box.right};
    }
  }
  return {scroll: document.documentElement.scrollWidth, widest};
}"""


def test_every_admin_section_fits_a_phone(shop: Shop, browser: Browser) -> None:
    page, errors = browser_page(browser)
    page.set_viewport_size(PHONE)
    page.set_default_timeout(30_000)
    page.goto(f"{shop.base_url}/admin/login")
    page.get_by_test_id("demo-admin").click()
    expect(page).to_have_url(re.compile(r"/admin/?$"))
    too_wide = {}
    for section in SECTIONS:
        response = page.goto(f"{shop.base_url}{section.href}")
        assert response is not None and response.status == 200, section.href
        page.wait_for_load_state("networkidle")
        measured = page.evaluate(WIDEST)
        if measured["scroll"] > PHONE["width"]:
            too_wide[section.href] = measured
        shot(page, f"admin-phone-{section.key}")
    assert too_wide == {}
    assert errors == []
