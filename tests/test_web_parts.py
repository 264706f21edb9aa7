"""The rating page's pure parts: QR drawing, the terminal's URL panel, token, addresses, JSON, requests."""

from __future__ import annotations

import math
import stat
import sys

import pytest
import segno

from deepdrummer_live.errors import DeepDrummerError, UsageError
from deepdrummer_live.surfaces import web
from deepdrummer_live.surfaces.qr import QUIET_ZONE, qr_lines
from deepdrummer_live.surfaces.tui import with_page_url

URL = "http://192.168.1.20:9080/?token=Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4"


def modules_from_lines(lines: list[str]) -> list[list[bool]]:
    """Back from half blocks to module rows (True = dark), the inverse of the drawing."""
    upper = {"█": True, "▀": True, "▄": False, " ": False}
    lower = {"█": True, "▀": False, "▄": True, " ": False}
    rows = []
    for line in lines:
        rows.append([not upper[c] for c in line])
        rows.append([not lower[c] for c in line])
    return rows


def test_qr_lines_draw_the_code_of_the_url():
    lines = qr_lines(URL)
    code = segno.make(URL, error="l", micro=False)
    want = [[bool(v) for v in row] for row in code.matrix_iter(scale=1, border=QUIET_ZONE)]
    got = modules_from_lines(lines)
    assert got[:len(want)] == want
    assert all(not any(row) for row in got[len(want):])  # padding is quiet zone (light)
    assert len({len(line) for line in lines}) == 1 and len(lines) == math.ceil(len(want) / 2)


def test_page_url_panel_right_below_or_a_hint():
    frame = ["x" * 60] * 18
    qr = qr_lines(URL)
    wide = with_page_url(frame, URL, qr, width=140, height=40)
    assert wide[0] == frame[0] and wide[1].endswith(qr[0]) and wide[len(qr)].endswith(qr[-1])
    assert any(URL in line for line in wide)
    tall = with_page_url(frame, URL, qr, width=80, height=60)
    assert tall[-len(qr):] == qr and URL in tall[len(frame)]
    small = with_page_url(frame, URL, qr, width=80, height=24)
    assert URL in small[len(frame)] and "QR code" in small[-1] and len(small) <= 24
    assert all(len(line) <= 79 for line in small)
    assert with_page_url(frame, None, [], 80, 24) == frame


def test_token_is_kept_in_the_state_dir_private(tmp_path):
    token = web.load_token(tmp_path)
    assert len(token) >= 32 and token == web.load_token(tmp_path)
    mode = stat.S_IMODE((tmp_path / web.TOKEN_FILE).stat().st_mode)
    assert mode == 0o600
    (tmp_path / web.TOKEN_FILE).unlink()
    assert web.load_token(tmp_path) != token  # deleting it makes a new one


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True),
                                             ("localhost", True), ("0.0.0.0", False), ("192.168.1.2", False)])
def test_is_loopback(host, loopback):
    assert web.is_loopback(host) is loopback


def test_a_host_that_is_not_an_address_is_a_usage_error():
    with pytest.raises(UsageError, match="not an IP address"):
        web.is_loopback("my-laptop")


def test_page_url_shows_a_reachable_address_and_the_token():
    assert web.page_url("127.0.0.1", 9080, None) == "http://127.0.0.1:9080/"
    url = web.page_url("0.0.0.0", 9081, "abc")
    assert url.endswith(":9081/?token=abc") and "0.0.0.0" not in url
    assert web.page_url("::1", 9080, None) == "http://[::1]:9080/"


def test_a_busy_port_is_a_usage_error_naming_it():
    sock = web.bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        with pytest.raises(UsageError, match=f"--web-port {port}"):
            web.bind("127.0.0.1", port)
    finally:
        sock.close()


def test_plain_makes_json_data():
    class Scalar:  # a numpy/torch scalar's protocol
        def __float__(self):
            return 0.5

    class Array:
        def tolist(self):
            return [1, 2]

    assert web.plain({"a": (1, 2.0, float("nan")), 3: [Scalar(), Array(), None, True, "s"]}) == \
        {"a": [1, 2.0, None], "3": [0.5, [1, 2], None, True, "s"]}


@pytest.mark.parametrize("data", [[], "like", {"command": 3}, {"command": ""}, {"command": "like", "args": 1},
                                  {"command": "like", "args": list(range(17))}])
def test_page_messages_that_are_not_a_command_call(data):
    with pytest.raises(DeepDrummerError):
        web.check_request(data)


def test_a_page_message():
    assert web.check_request({"id": 7, "command": "tempo", "args": [96]}) == (7, "tempo", [96])
    assert web.check_request({"command": "like"}) == (None, "like", [])


def test_assets_come_from_the_package():
    assets = web.load_assets()
    assert web.TOKEN_PLACEHOLDER.encode() in assets["index.html"]
    for name in ("app.js", "style.css"):
        assert f'{name}{web.TOKEN_PLACEHOLDER}'.encode() in assets["index.html"]
    assert b"http" not in assets["index.html"].replace(b"http-equiv", b"")  # no CDN, no other host


@pytest.mark.parametrize("flags, needle", [(["--web-host", "my-laptop"], "--web-host 'my-laptop'"),
                                           (["--web-port", "70000"], "70000"),
                                           (["--web-port", "busy"], "--web-port")])
def test_run_with_an_unusable_page_address_exits_2_with_one_line(tmp_path, flags, needle):
    import socket
    import subprocess

    from daemon import CLI, REPO, free_udp_port

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        flags = [str(busy.getsockname()[1]) if f == "busy" else f for f in flags]
        out = subprocess.run([*CLI, "run", "--headless", "--state-dir", str(tmp_path), "--osc-port",
                              str(free_udp_port()), "--midi-backend", "none", "--audio", "none", *flags],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], out.stderr


@pytest.mark.skipif(__import__("shutil").which("tmux") is None,
                    reason="tmux is not installed (apt-get install tmux); this needs a real terminal")
def test_terminal_surface_shows_the_page_address_and_its_qr_code(tmp_path):
    import socket

    from test_tui import Tmux

    from daemon import REPO, free_udp_port

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    cmd = (f"{sys.executable} -m deepdrummer_live.cli.main run --state-dir {tmp_path / 'state'} "
           f"--osc-port {free_udp_port()} --midi-backend none --audio none --web-port {port} --seed 1 "
           f"2>{tmp_path / 'stderr'}")
    tmux = Tmux()
    try:
        # LANG: the QR code is drawn with half blocks only where the terminal speaks UTF-8
        tmux("new-session", "-d", "-s", "dd", "-x", "120", "-y", "45", "-e", "LANG=C.UTF-8", "-c", str(REPO), cmd)
        screen = tmux.wait_for(f"rating page: {url}")
        tmux.wait_for("P(like)")
        screen = tmux.screen()
        drawn = [line.rstrip() for line in screen.splitlines()]
        code = [line.rstrip() for line in qr_lines(url)]
        for i in range(len(drawn) - len(code) + 1):  # the code's lines, in order, at one column
            col = drawn[i].find(code[0])
            if col >= 0 and all(drawn[i + k][col:col + len(row)] == row for k, row in enumerate(code)):
                break
        else:
            raise AssertionError(f"no QR code of {url} on the screen:\n{screen}")
    finally:
        tmux.kill()


def test_default_page_port_taken_the_daemon_runs_on_without_the_page(tmp_path):
    """v1 clients start daemons without --web-port: a second daemon must not die on the default 9080.
    An explicit --web-port that is taken still ends `run` with exit 2 (a flag asked for it)."""
    import socket

    from deepdrummer_live.vocab import WEB_PORT

    from daemon import Daemon, OscClient, wait_for

    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    def hold() -> bool:
        try:
            holder.bind(("127.0.0.1", WEB_PORT))
        except OSError:
            return False
        holder.listen(1)
        return True

    # The port must stay taken for the whole test, so this test holds it. Another process may hold
    # it now (a daemon someone started with the default page): wait for it to let go, and if it
    # never does, it keeps the port taken for us.
    try:
        wait_for(hold, 60, f"port {WEB_PORT} to be free for this test to hold")
    except AssertionError:
        pass
    try:
        d = Daemon(tmp_path / "a")
        i = d.args.index("--web-port")
        del d.args[i:i + 2]  # no --web-port at all, as a v1 client starts it
        d.start()
        try:
            probe = OscClient(d.port)
            probe.send("/dd/ping")
            assert probe.expect("/dd/pong") == []
            probe.close()
            assert "no rating page" in d.output()
        finally:
            assert d.stop() == 0
        d2 = Daemon(tmp_path / "b", "--web-port", str(WEB_PORT))
        d2.start(wait=False)
        try:
            assert d2.proc.wait(timeout=120) == 2
        finally:
            if d2.proc.poll() is None:  # a daemon that ran on must not outlive the test
                d2.kill9()
        assert f"{WEB_PORT}" in d2.output()
    finally:
        holder.close()
