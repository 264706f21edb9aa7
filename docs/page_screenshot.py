"""Take the page's screenshots in docs/images/ at a phone's size (390x844 CSS pixels), from a real daemon
in Debian's chromium. Run from the repo root: `.venv/bin/python docs/page_screenshot.py`.

page-phone.png             the paper's loop (4 rows, one bar of 4/4) after a dislike and a like
page-phone-8x4.png         8 rows x 4 bars of 7/8 (contract v1.2): the playing bar, the other bars one tap away
page-phone-8x4-bar3.png    the same phrase with bar 3 tapped (it stays shown while bar 1 plays)
page-phone-taste.png       the taste map under the grid after 16 ratings (what the critic learnt, in words)"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_url(log: Path, proc: subprocess.Popen, timeout: float = 180.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"web page: (http://\S+)", log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if proc.poll() is not None:
            sys.exit(f"the daemon exited ({proc.returncode}): {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)  # polling a log file: the condition is the line, the deadline bounds it
    sys.exit(f"no page address in the daemon's log within {timeout:g} s")


def rate(page, loop, verdict: str) -> None:
    """Press Like/Dislike and wait until the next loop is shown."""
    before = loop.get_attribute("data-loop-id")
    page.get_by_role("button", name=verdict, exact=True).click()
    expect(page.locator("#rated")).to_contain_text(f"Rated: {verdict.lower()} loop #{before}")
    expect(loop).not_to_have_attribute("data-loop-id", before)


def settle(page) -> None:
    expect(page.locator(".cell.now").first).to_be_visible()  # the playhead is running
    page.wait_for_function("document.getAnimations().length === 0")  # the new loop's flash is over


def shoot(flags: list[str], take) -> None:
    """Start a daemon with `flags`, open its page on a phone-sized chromium, and call take(page, loop)."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "daemon.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "deepdrummer_live.cli.main", "run", "--headless",
                                     "--state-dir", str(Path(tmp) / "state"), "--seed", "7",
                                     "--osc-port", str(free_port(socket.SOCK_DGRAM)),
                                     "--web-port", str(free_port(socket.SOCK_STREAM)),
                                     "--midi-backend", "none", "--audio", "none", "--autoplay", *flags],
                                    cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = wait_for_url(log, proc)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
                page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                        is_mobile=True, has_touch=True)
                page.set_default_timeout(60_000)
                page.goto(url)
                loop = page.locator("[data-loop-id]")
                expect(loop).to_have_attribute("data-loop-id", re.compile(r"^\d+$"))
                take(page, loop)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def paper_loop(page, loop) -> None:
    rate(page, loop, "Dislike")
    rate(page, loop, "Like")
    settle(page)
    page.screenshot(path=str(IMAGES / "page-phone.png"))


def big_phrase(page, loop) -> None:
    expect(page.locator("#shape")).to_have_text("4 bars of 7/8")
    settle(page)
    page.screenshot(path=str(IMAGES / "page-phone-8x4.png"))
    page.get_by_role("button", name="bar 3").click()
    expect(page.get_by_role("button", name="bar 3")).to_have_attribute("aria-pressed", "true")
    page.screenshot(path=str(IMAGES / "page-phone-8x4-bar3.png"))


def taste_map(page, loop) -> None:
    # a performer who likes loops with a snare or clap and dislikes the others: a taste the map can name
    for _ in range(16):
        roles = " ".join(loop.locator(".sample").evaluate_all("els => els.map(e => e.title)"))
        rate(page, loop, "Like" if ("snare" in roles or "clap" in roles) else "Dislike")
    expect(page.locator("#taste-ratings")).to_have_text("from 16 ratings", timeout=120_000)
    expect(page.locator("#taste-likes li").first).to_be_visible()
    settle(page)
    page.locator("#taste").scroll_into_view_if_needed()
    page.screenshot(path=str(IMAGES / "page-phone-taste.png"))


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    shoot([], paper_loop)
    shoot(["--rows", "8", "--bars", "4", "--meter", "7/8"], big_phrase)
    shoot([], taste_map)
    print(*sorted(IMAGES.glob("page-phone*.png")), sep="\n")


if __name__ == "__main__":
    main()
