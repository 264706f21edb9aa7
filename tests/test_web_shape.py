"""The rating page with bigger loops (contract v1.2) in a real browser: 8 rows x 4 bars on a phone in
portrait shows the playing bar, the phrase's other bars one tap away, with the meter's beats."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from test_web import PageDaemon, browser, loop_element, page  # noqa: F401 (fixtures)


@pytest.mark.slow
def test_an_8_row_4_bar_phrase_in_7_8_on_a_phone(tmp_path, page):  # noqa: F811
    d = PageDaemon(tmp_path / "state", "--rows", "8", "--bars", "4", "--meter", "7/8").start()
    try:
        page.goto(d.url)
        loop = loop_element(page)
        expect(loop).to_have_attribute("data-loop-id", re.compile(r"^\d+$"))
        expect(page.locator("#shape")).to_have_text("4 bars of 7/8")
        tabs = page.get_by_role("button", name=re.compile(r"^bar \d$"))
        expect(tabs).to_have_count(4)
        rows = page.locator("#grid .row")
        expect(rows).to_have_count(8)
        # one bar at a time: 14 steps of bar 1, beats of 2+2+3 eighths (gaps before steps 4 and 8)
        expect(rows.first.locator(".cell")).to_have_count(14)
        expect(rows.first.locator(".beat-gap")).to_have_count(2)
        assert rows.first.locator(".cell").first.get_attribute("data-step") == "0"
        page.get_by_role("button", name="bar 3").click()
        expect(page.get_by_role("button", name="bar 3")).to_have_attribute("aria-pressed", "true")
        assert rows.first.locator(".cell").first.get_attribute("data-step") == "28"
        # the cells show what /dd/loop says for that bar
        d.osc.send("/dd/status")
        current = d.osc.expect("/dd/status")[2]
        assert loop.get_attribute("data-loop-id") == str(current)
        # no sideways scroll at a phone's width
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        # the taste map: empty before any rating, then what the critic learnt, in words
        expect(page.locator("#taste")).to_be_visible()
        expect(page.locator("#taste-ratings")).to_have_text("from 0 ratings")
        for verdict in ("Like", "Dislike", "Like"):
            page.get_by_role("button", name=verdict, exact=True).click()
            expect(page.locator("#rated")).to_contain_text(f"Rated: {verdict.lower()}")
        expect(page.locator("#taste-ratings")).to_have_text("from 3 ratings", timeout=60_000)
        expect(page.locator("#taste-likes li").first).to_contain_text("+ ")
        # the shape controls run the commands: 3 rows from the next loop on
        page.locator("#rows").select_option("3")
        for _ in range(5):  # the command goes over the page's socket: a loop made before it may come first
            loop_args = d.next_loop()
            if len(loop_args[4:]) == 3 * 3:
                break
        assert len(loop_args[4:]) == 3 * 3, loop_args
        expect(rows).to_have_count(3, timeout=60_000)
    finally:
        d.osc.close()
        d.stop()
