"""Take docs/images/page-phone.png: the rating page at a phone's size (390x844 CSS pixels), from a real
daemon in Debian's chromium. Run from the repo root: `.venv/bin/python docs/page_screenshot.py`."""

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
OUT = REPO / "docs" / "images" / "page-phone.png"
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


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "daemon.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "deepdrummer_live.cli.main", "run", "--headless",
                                     "--state-dir", str(Path(tmp) / "state"), "--seed", "7",
                                     "--osc-port", str(free_port(socket.SOCK_DGRAM)),
                                     "--web-port", str(free_port(socket.SOCK_STREAM)),
                                     "--midi-backend", "none", "--audio", "none", "--autoplay"],
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
                first = loop.get_attribute("data-loop-id")
                page.get_by_role("button", name="Dislike", exact=True).click()
                expect(loop).not_to_have_attribute("data-loop-id", first)
                second = loop.get_attribute("data-loop-id")
                page.get_by_role("button", name="Like", exact=True).click()
                expect(page.locator("#rated")).to_contain_text(f"Rated: like loop #{second}")
                expect(loop).not_to_have_attribute("data-loop-id", second)
                expect(page.locator(".cell.now").first).to_be_visible()  # the playhead is running
                page.wait_for_function("document.getAnimations().length === 0")  # the new loop's flash is over
                OUT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(OUT))
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print(OUT)


if __name__ == "__main__":
    main()
