"""Issue 25, point 6: every control a keyboard reaches on the customer pages shows a focus
ring with a contrast of at least 3:1 against what surrounds it (a single control was
checked before). The long note's fold is tested with the invoices (test_invoices.py)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import login
from tests.browser.test_look import STANDARD, contrast

PAGES = ["/package", "/package/edit", "/invoices", "/billing", "/payment-methods", "/support"]
# The focused element's ring, and the colour of what lies around it (the nearest ancestor
# with a background of its own; the ring sits outside the element, on that background).
RING = """() => {
  const el = document.activeElement;
  const s = getComputedStyle(el);
  let bg = 'rgb(255, 255, 255)';
  for (let n = el.parentElement; n; n = n.parentElement) {
    const c = getComputedStyle(n).backgroundColor;
    if (c && c !== 'transparent' && !c.startsWith('rgba(0, 0, 0, 0')) { bg = c; break; }
  }
  return {tag: el.tagName, text: (el.innerText || el.value || el.name || '').slice(0, 30),
          width: s.outlineWidth, style: s.outlineStyle, color: s.outlineColor, bg: bg};
}"""


@pytest.mark.parametrize("path", PAGES)
def test_every_control_a_keyboard_reaches_has_a_visible_ring(page: Page, path: str) -> None:
    login(page, STANDARD)
    page.goto(path)
    page.locator("body").focus()
    seen = 0
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement === document.body"):
            break
        ring = page.evaluate(RING)
        if ring["tag"] == "IFRAME":
            continue
        seen += 1
        assert ring["style"] != "none", f"{path}: no focus ring on {ring}"
        assert float(ring["width"].rstrip("px")) >= 2, f"{path}: thin ring on {ring}"
        assert contrast(ring["color"], ring["bg"]) >= 3, f"{path}: faint ring on {ring}"
    assert seen >= 5, f"{path}: only {seen} controls reached by Tab"
