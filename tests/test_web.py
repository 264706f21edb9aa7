"""The rating page in a real browser (Debian's chromium driven by playwright) against a real daemon.

The browser is the system one (`executable_path`): nothing is downloaded. Every wait is for a
condition on the page or on OSC, with a deadline.
"""

from __future__ import annotations

import http.client
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright

from daemon import Daemon, OscClient, free_tcp_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
WAIT_MS = 20_000  # generous for a loaded CI machine; each wait ends as soon as its condition holds
URL_LINE = re.compile(r"web page: (http://\S+)")





@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():  # only the browser tests skip; the HTTP and WebSocket ones still run
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; `make test` installs it as root)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                  is_mobile=True, has_touch=True)
    context.set_default_timeout(WAIT_MS)
    pg = context.new_page()
    yield pg
    context.close()


class PageDaemon:
    """A daemon with its page on a free port, and an OSC client subscribed to it."""

    def __init__(self, state_dir: Path, *extra: str, web_port: int | None = None, osc_port: int | None = None):
        self.web_port = web_port or free_tcp_port()
        self.osc = OscClient(0)
        self.daemon = Daemon(state_dir, "--web-port", str(self.web_port), "--notify",
                             f"127.0.0.1:{self.osc.port}", *extra, port=osc_port)
        self.osc.target = ("127.0.0.1", self.daemon.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/"

    def printed_url(self) -> str:
        found = URL_LINE.search(self.daemon.output())
        assert found, self.daemon.output()
        return found.group(1)

    def start(self) -> PageDaemon:
        self.daemon.start()
        self.osc.drain()
        return self

    def status(self) -> list:
        self.osc.send("/dd/status")
        return self.osc.expect("/dd/status")

    def next_loop(self) -> list:
        """/dd/next, then the /dd/loop it causes (not one left over from an earlier test)."""
        current = self.status()[2]
        self.osc.send("/dd/next")
        while True:
            loop = self.osc.expect("/dd/loop")
            if loop[0] > current:
                return loop

    def stop(self) -> None:
        assert self.daemon.stop() == 0, self.daemon.output()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One daemon for the tests that work from its current state (a start costs seconds of torch warm-up)."""
    d = PageDaemon(tmp_path_factory.mktemp("page") / "state").start()
    yield d
    d.osc.close()
    d.stop()


def loop_element(page):
    return page.locator("[data-loop-id]")


def test_page_shows_the_current_loop_and_its_controls(served, page):
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(served.url)
    expect(page.locator("#conn")).to_have_text("connected")
    current = served.status()[2]
    expect(loop_element(page)).to_have_attribute("data-loop-id", str(current))
    for name in ("Like", "Dislike", "Next", "Undo", "Save"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_visible()
    expect(page.locator(".grid .row")).to_have_count(4)
    expect(page.get_by_label("mode")).to_have_value(served.status()[3])
    expect(page.locator("#hearing")).to_be_hidden()  # a built-in kit comes with its hearing critic
    # Everything came from the daemon itself: no CDN, no other host.
    assert requests and all(urlsplit(u).netloc == f"127.0.0.1:{served.web_port}" for u in requests), requests


def test_like_shows_rated_then_the_next_loop_and_is_counted(served, page):
    page.goto(served.url)
    before = served.status()
    expect(loop_element(page)).to_have_attribute("data-loop-id", str(before[2]))
    page.get_by_role("button", name="Like", exact=True).click()
    expect(page.locator("#rated")).to_contain_text(f"Rated: like loop #{before[2]}")
    expect(loop_element(page)).not_to_have_attribute("data-loop-id", str(before[2]))
    new_id = int(loop_element(page).get_attribute("data-loop-id"))
    assert new_id > before[2]
    likes, dislikes, current = served.status()[:3]
    assert (likes, dislikes) == (before[0] + 1, before[1])
    assert current == new_id
    expect(page.locator("#likes")).to_have_text(str(likes))


def test_a_loop_made_current_over_osc_shows_in_the_page(served, page):
    page.goto(served.url)
    expect(loop_element(page)).to_have_attribute("data-loop-id", str(served.status()[2]))
    new_id = served.next_loop()[0]
    expect(loop_element(page)).to_have_attribute("data-loop-id", str(new_id))


def test_keyboard_shortcuts(served, page):
    page.goto(served.url)
    likes, dislikes, first = served.status()[:3]
    expect(loop_element(page)).to_have_attribute("data-loop-id", str(first))
    page.keyboard.press("n")
    expect(loop_element(page)).not_to_have_attribute("data-loop-id", str(first))
    second = int(loop_element(page).get_attribute("data-loop-id"))
    page.keyboard.press("d")
    expect(page.locator("#rated")).to_contain_text(f"Rated: dislike loop #{second}")
    assert served.status()[:2] == [likes, dislikes + 1]
    page.keyboard.press("u")
    expect(page.locator("#dislikes")).to_have_text(str(dislikes))
    assert served.status()[:2] == [likes, dislikes]
    page.keyboard.press(" ")
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_visible()
    page.keyboard.press(" ")
    expect(page.get_by_role("button", name="Play", exact=True)).to_be_visible()


def test_controls_run_commands_and_errors_show_their_message(served, page):
    page.goto(served.url)
    expect(page.locator("#conn")).to_have_text("connected")
    mode = page.get_by_label("mode")
    mode.select_option("random")
    expect(mode).to_have_value("random")
    deadline = time.monotonic() + WAIT_MS / 1000
    while served.status()[3] != "random":  # the page's command runs in the daemon's own time
        assert time.monotonic() < deadline, "the mode chosen in the page never reached the daemon"
    mode.select_option("explore")
    shown = served.status()[2]
    served.osc.drain(0)
    page.get_by_role("button", name="Save", exact=True).click()
    # Save keeps the daemon's current loop at the moment it runs: a next asked for by an earlier test may
    # land in between, so the saved id is read from the daemon's own /dd/saved, not from before the click.
    saved = served.osc.expect("/dd/saved")[0]
    assert saved >= shown
    expect(page.locator("#rated")).to_contain_text(f"Saved loop #{saved}")  # after /dd/saved: files on disk
    assert list((served.daemon.state_dir / "library").glob(f"*{saved}-saved.mid"))
    tempo = page.get_by_label("tempo")
    tempo.fill("400")
    tempo.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("400")
    tempo.fill("96")
    tempo.press("Enter")
    expect(page.get_by_role("alert")).to_have_text("")


def test_phone_layout_big_buttons_no_sideways_scroll(served, page, tmp_path):
    page.goto(served.url)
    expect(loop_element(page)).to_have_attribute("data-loop-id", str(served.status()[2]))
    for name in ("Like", "Dislike"):
        box = page.get_by_role("button", name=name, exact=True).bounding_box()
        assert box["height"] >= 96 and box["width"] >= 150, (name, box)  # a thumb's target
        assert box["y"] + box["height"] <= 844  # on the first screen, no scrolling to rate
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(tmp_path / "phone.png"))


def test_reconnects_after_a_daemon_restart(tmp_path, page):
    d = PageDaemon(tmp_path / "state").start()
    try:
        page.goto(d.url)
        first = d.status()[2]
        expect(loop_element(page)).to_have_attribute("data-loop-id", str(first))
        d.stop()
        expect(page.locator("#conn")).to_contain_text("disconnected")
        d2 = PageDaemon(tmp_path / "state", web_port=d.web_port, osc_port=d.daemon.port).start()
        try:
            expect(page.locator("#conn")).to_have_text("connected")
            current = d2.status()[2]
            assert current > first  # ids keep growing across restarts
            expect(loop_element(page)).to_have_attribute("data-loop-id", str(current))
            page.get_by_role("button", name="Like", exact=True).click()
            expect(page.locator("#rated")).to_contain_text(f"Rated: like loop #{current}")
            assert d2.status()[0] == 1
        finally:
            d2.osc.close()
            d2.stop()
    finally:
        d.osc.close()
        if d.daemon.proc.poll() is None:
            d.stop()


def test_the_page_says_while_the_critic_learns_to_hear_a_kit_of_ones_own(tmp_path, page):
    """A folder of one-shots has no hearing critic: the page shows the critic learning to hear it."""
    import shutil

    from deepdrummer_live.paths import builtin_kits_dir

    kit = tmp_path / "my-kit"
    kit.mkdir()
    for wav in sorted((builtin_kits_dir() / "dd-analog").glob("*.wav"))[::2]:
        shutil.copy(wav, kit / wav.name)
    # the critic that hears the mix learns to hear a kit; the default one reads loops and needs no hearing
    d = PageDaemon(tmp_path / "state", "--kit", str(kit), "--critic-kind", "lean-hearing").start()
    try:
        page.goto(d.url)
        expect(page.locator("#conn")).to_have_text("connected")
        expect(page.locator("#hearing")).to_be_visible()
        expect(page.locator("#hearing")).to_contain_text("learning to hear the kit")
    finally:
        d.osc.close()
        d.stop()


def http_status(host: str, port: int, path: str, headers: dict | None = None) -> int:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        return conn.getresponse().status
    finally:
        conn.close()


WS_UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


def test_off_loopback_every_request_needs_the_token(tmp_path, page):
    d = PageDaemon(tmp_path / "state", "--web-host", "0.0.0.0").start()
    try:
        url = d.printed_url()
        parts = urlsplit(url)
        token = re.fullmatch(r"token=([\w-]+)", parts.query).group(1)
        host = parts.hostname
        assert not host.startswith("127."), url  # the address a phone can reach
        before = d.status()
        for path in ("/", "/app.js", "/style.css", "/ws", "/?token=wrong", f"/?token={token[:-1]}"):
            assert http_status(host, d.web_port, path) == 403, path
        assert http_status(host, d.web_port, "/ws", WS_UPGRADE) == 403
        assert http_status(host, d.web_port, "/ws?token=nope", WS_UPGRADE) == 403
        refused = page.goto(f"http://{host}:{d.web_port}/")
        assert refused.status == 403
        assert d.status()[:3] == before[:3]  # nothing changed

        assert http_status(host, d.web_port, f"/app.js?token={token}") == 200
        page.goto(url)
        expect(page.locator("#conn")).to_have_text("connected")
        expect(loop_element(page)).to_have_attribute("data-loop-id", str(before[2]))
        page.get_by_role("button", name="Like", exact=True).click()
        expect(page.locator("#rated")).to_contain_text(f"Rated: like loop #{before[2]}")
        assert d.status()[0] == before[0] + 1
    finally:
        d.osc.close()
        d.stop()


def test_loopback_page_refuses_other_host_names_and_sites(served):
    # DNS rebinding: a site's name resolving to 127.0.0.1 must not reach the daemon's page.
    assert http_status("127.0.0.1", served.web_port, "/", {"Host": "evil.example:80"}) == 403
    assert http_status("127.0.0.1", served.web_port, "/", {"Host": f"localhost:{served.web_port}"}) == 200
    # Another site's script opening the WebSocket (browsers send its Origin).
    assert http_status("127.0.0.1", served.web_port, "/ws",
                       {**WS_UPGRADE, "Origin": "http://evil.example"}) == 403
    assert http_status("127.0.0.1", served.web_port, "/ws",
                       {**WS_UPGRADE, "Origin": f"http://127.0.0.1:{served.web_port}"}) == 101


def test_a_row_locked_in_the_page_stays_in_the_next_loops(served, page):
    page.goto(served.url)
    expect(loop_element(page)).to_have_attribute("data-loop-id", str(served.status()[2]))
    lock = page.get_by_role("button", name="lock row 1", exact=True)
    expect(lock).to_have_attribute("aria-pressed", "false")
    lock.click()
    # pressed once the daemon's snapshot says the row is locked, not when clicked
    expect(lock).to_have_attribute("aria-pressed", "true")
    kept = page.locator(".grid .row").first.locator(".sample").text_content()
    try:
        for _ in range(3):
            loop = served.next_loop()
            assert loop[4] == kept, loop  # row 0's sample, in /dd/loop order
            expect(loop_element(page)).to_have_attribute("data-loop-id", str(loop[0]))
            expect(page.get_by_role("button", name="lock row 1", exact=True)).to_have_attribute("aria-pressed",
                                                                                              "true")
    finally:
        page.get_by_role("button", name="lock row 1", exact=True).click()
        expect(page.get_by_role("button", name="lock row 1", exact=True)).to_have_attribute("aria-pressed", "false")


@pytest.mark.parametrize("name, value, shown, default", [("density", "0.8", "0.80", "0.5"),
                                                         ("swing", "0.25", "0.25", "0")])
def test_sliders_reach_the_daemon(served, page, name, value, shown, default):
    page.goto(served.url)
    expect(page.locator("#conn")).to_have_text("connected")
    slider = page.get_by_label(name)
    expect(slider).to_be_visible()  # the command table has it
    slider.fill(value)  # a range input: fill sets the value and fires change
    expect(page.get_by_role("alert")).to_have_text("")
    try:
        page.reload()  # what the daemon now says, from a fresh snapshot
        expect(page.locator(f"#{name}-out")).to_have_text(shown)
        expect(page.get_by_label(name)).to_have_value(value)
    finally:
        page.get_by_label(name).fill(default)


def test_websocket_commands_have_the_osc_checks_and_bad_ones_change_nothing(served):
    """What the page's script (or any WebSocket client) sends is checked like the OSC message."""
    import asyncio
    import json
    from concurrent.futures import ThreadPoolExecutor

    import aiohttp

    async def exchange(messages: list) -> list[dict]:
        answers = []
        async with aiohttp.ClientSession() as http, http.ws_connect(served.url + "ws") as ws:
            hello = json.loads((await ws.receive(timeout=30)).data)
            assert hello["type"] == "hello" and "like" in hello["commands"] and hello["snapshot"]["loop"]
            for i, message in enumerate(messages):
                await ws.send_str(message if isinstance(message, str) else json.dumps({"id": i, **message}))
                while True:
                    answer = json.loads((await ws.receive(timeout=30)).data)
                    if answer["type"] == "result":
                        answers.append(answer)
                        break
        return answers

    before = served.status()
    messages = [
        {"command": "tempo", "args": [400]},
        {"command": "fotf", "args": [1.5]},
        {"command": "like", "args": [2**31 - 1]},
        {"command": "no_such_command"},
        {"command": "mode", "args": ["loud"]},
        "not json",
        {"command": "like", "args": "1"},
        {"command": "ping"},
    ]
    # its own thread: playwright's sync API keeps an event loop running in this one
    with ThreadPoolExecutor(1) as pool:
        answers = pool.submit(asyncio.run, exchange(messages)).result(timeout=120)
    errors = [a.get("error", "") for a in answers]
    assert [a["ok"] for a in answers] == [False] * 7 + [True], answers
    for text, needle in zip(errors, ["400", "1.5", str(2**31 - 1), "no_such_command", "loud", "JSON", "args"]):
        assert needle in text, (needle, text)
    assert served.status()[:4] == before[:4]  # counts, current loop and mode: nothing changed


def test_hello_is_the_first_message_even_when_state_and_events_race_it(tmp_path):
    """A snapshot broadcast while a page's hello is being made must not go first; an event then is kept.

    The real server on a real socket, with a stand-in session whose snapshot for the hello is held
    until a poll snapshot and an event have been broadcast (the race CI hit under load).
    """
    import asyncio
    import json
    import threading

    import aiohttp

    from deepdrummer_live.surfaces.web import WebServer

    held = threading.Event()
    release = threading.Event()

    class Session:
        listeners = []

        def add_listener(self, fn):
            self.listeners.append(fn)

        def snapshot(self):
            if threading.current_thread().name.startswith("web-view") and not held.is_set():
                held.set()  # the first snapshot asked for by the new page: its hello's
                assert release.wait(30), "the test never released the hello's snapshot"
            return {"loop": 7, "step": 0, "playing": True}

        def report_error(self, *args):
            raise AssertionError(args)

    server = WebServer("127.0.0.1", 0, tmp_path)
    session = Session()
    server.start(session)

    async def first_messages() -> list[dict]:
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{server.url}ws") as ws:
            got = []
            while len(got) < 2:
                got.append(json.loads((await ws.receive(timeout=30)).data))
            return got

    try:
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(asyncio.run, first_messages())
            assert held.wait(30), "the page's hello never asked for a snapshot"
            done = threading.Event()

            def race():
                server._broadcast({"type": "snapshot", "snapshot": {"loop": 6, "step": 3}})
                server._broadcast({"type": "step", "step": 4, "playing": True})
                done.set()

            server._loop.call_soon_threadsafe(race)
            assert done.wait(30)
            session.listeners[0]("/dd/loop", (8, "a"))  # an event while the hello waits: kept, after it
            server._loop.call_soon_threadsafe(release.set)
            messages = future.result(timeout=60)
    finally:
        release.set()
        server.stop()
    assert messages[0]["type"] == "hello" and messages[0]["snapshot"]["loop"] == 7, messages
    assert messages[1] == {"type": "event", "address": "/dd/loop", "args": [8, "a"]}, messages
