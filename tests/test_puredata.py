"""The shipped Pd patch (package data: puredata/deepdrummer.pd) in a real headless Pd, as an outside OSC client.

The patch doubles as an abstraction: [deepdrummer <daemon-port> <listen-port>], so each test
writes a one-line harness patch with free ports and drives the patch's public receive names
(dd-like, dd-tempo...) exactly as a click on its buttons would. Pd's console (stderr) carries
what the patch received: it prints every inbound message as `dd: <address> <args...>`.
"""

from __future__ import annotations

import queue
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from deepdrummer_live.client import decode
from deepdrummer_live.paths import puredata_dir

from daemon import build, free_udp_port

ROOT = Path(__file__).resolve().parent.parent
PATCH_DIR = puredata_dir()
PATCH = PATCH_DIR / "deepdrummer.pd"
PD = shutil.which("pd")

pytestmark = pytest.mark.skipif(PD is None, reason="Pure Data is not installed (Debian: apt install puredata-core)")


class PdProcess:
    """`pd -nogui` running a harness patch; its console lines are collected as they come."""

    def __init__(self, harness: str, tmp_path: Path):
        path = tmp_path / "harness.pd"
        path.write_text("#N canvas 0 50 450 300 12;\n" + harness)
        self.proc = subprocess.Popen([PD, "-nogui", "-noaudio", "-nomidi", "-stderr", "-path", str(PATCH_DIR),
                                      "-open", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: list[str] = []
        self._q: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self._q.put(line.rstrip("\n"))

    def wait_for(self, prefix: str, timeout: float) -> str:
        """First console line starting with `prefix` (seen before or arriving within `timeout`)."""
        for line in self.lines:
            if line.startswith(prefix):
                return line
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=0.1)
            except queue.Empty:
                continue
            self.lines.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"Pd printed no line starting with {prefix!r} in {timeout:g} s; console:\n"
                             + "\n".join(self.lines))

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._reader.join(timeout=5)
        while not self._q.empty():
            self.lines.append(self._q.get())


def _assert_clean_console(lines: list[str]) -> None:
    bad = [line for line in lines if "couldn't create" in line or "error" in line.lower()
           and not line.startswith("dd: error")]
    assert not bad, "Pd reported problems:\n" + "\n".join(lines)


def test_main_patch_loads_in_pd_nogui():
    proc = subprocess.run([PD, "-nogui", "-noaudio", "-nomidi", "-stderr", "-open", str(PATCH), "-send", "pd quit"],
                          capture_output=True, text=True, timeout=30, cwd=PATCH_DIR)
    lines = proc.stderr.splitlines()
    assert not [line for line in lines if "couldn't create" in line], proc.stderr
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("0.0.0.0", 9001))
        except OSError:
            return  # something else holds 9001, so Pd's own bind error there says nothing about the patch
    _assert_clean_console(lines)


def test_patch_sends_well_formed_osc_and_shows_replies(tmp_path):
    """Against a fake daemon (a bare UDP socket): exact addresses, argument types and values."""
    daemon_port, listen_port = free_udp_port(), free_udp_port()
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", daemon_port))
    daemon.settimeout(0.2)
    pd = PdProcess(
        f"#X obj 10 10 deepdrummer {daemon_port} {listen_port};\n"
        "#X obj 10 60 loadbang;\n#X obj 10 85 delay 300;\n"
        "#X msg 10 110 \\; dd-like bang \\; dd-dislike bang \\; dd-next bang \\; dd-undo bang \\; dd-tempo 133.5"
        " \\; dd-fotf 1 \\; dd-mode symbol good \\; dd-play bang \\; dd-stop bang \\; dd-ping bang;\n"
        "#X connect 1 0 2 0;\n#X connect 2 0 3 0;\n", tmp_path)
    try:
        got, sender = [], None
        deadline = time.monotonic() + 10
        while len(got) < 11 and time.monotonic() < deadline:
            try:
                data, sender = daemon.recvfrom(65536)
            except TimeoutError:
                continue
            (msg,) = decode(data)
            got.append((msg.address, list(msg.args)))
        assert got == [("/dd/subscribe", [float(listen_port)]), ("/dd/like", []), ("/dd/dislike", []),
                       ("/dd/next", []), ("/dd/undo", []), ("/dd/tempo", [133.5]), ("/dd/fotf", [1.0]),
                       ("/dd/mode", ["good"]), ("/dd/play", []), ("/dd/stop", []), ("/dd/ping", [])]
        assert isinstance(got[0][1][0], float), "Pd sends floats; the daemon accepts integral floats for i"

        loop = [7, 0.25, 120.0, 16, "kick_01", 36, "x...x...x...x...", "snare_02", 38, "....x.......x...",
                "closed_hat", 42, "x.x.x.x.x.x.x.x.", "clap", 39, "................"]
        daemon.sendto(build("/dd/loop", *loop), ("127.0.0.1", listen_port))
        daemon.sendto(build("/dd/rated", 7, "like", 3, 1), ("127.0.0.1", listen_port))
        daemon.sendto(build("/dd/error", "tempo 400 is out of range", "/dd/tempo"), ("127.0.0.1", listen_port))
        assert pd.wait_for("dd: loop", 10) == ("dd: loop 7 0.25 120 16 kick_01 36 x...x...x...x... snare_02 38 "
                                               "....x.......x... closed_hat 42 x.x.x.x.x.x.x.x. clap 39 "
                                               "................")
        assert pd.wait_for("dd: rated", 10) == "dd: rated 7 like 3 1"
        assert pd.wait_for("dd: error", 10).startswith("dd: error tempo\\ 400")
    finally:
        pd.close()
        daemon.close()
    _assert_clean_console(pd.lines)


@pytest.mark.slow
def test_pd_like_reaches_the_real_daemon(deepdrummer_daemon, tmp_path):
    """The real daemon from the package's pytest plugin (docs/testing.md), subscribed from its start."""
    d = deepdrummer_daemon
    listen_port = free_udp_port()
    current = d.wait("/dd/loop")[0]  # the first loop is current: the patch's like rates it
    d.send("/dd/status")
    likes_before = d.expect("/dd/status")[0]
    pd = PdProcess(
        f"#X obj 10 10 deepdrummer {d.osc_port} {listen_port};\n"
        "#X obj 10 60 loadbang;\n#X obj 10 85 delay 500;\n#X msg 10 110 \\; dd-like bang;\n"
        "#X obj 10 140 delay 1500;\n#X msg 10 165 \\; dd-status bang;\n"
        "#X connect 1 0 2 0;\n#X connect 2 0 3 0;\n#X connect 1 0 4 0;\n#X connect 4 0 5 0;\n", tmp_path)
    try:
        rated = pd.wait_for("dd: rated", 30).split()
        assert rated[2:4] == [str(current), "like"], rated
        assert int(rated[4]) == likes_before + 1
        loop = pd.wait_for("dd: loop", 60).split()
        assert int(loop[2]) > current, "a rating makes a new loop current"
        n_steps = int(loop[5])
        rows = loop[6:]
        assert len(rows) % 3 == 0 and rows, loop
        for name, note, steps in zip(rows[0::3], rows[1::3], rows[2::3]):
            assert 0 <= int(note) <= 127 and len(steps) == n_steps and set(steps) <= {"x", "."}, (name, note, steps)
        d.send("/dd/status")  # counted by the daemon, not only shown by the patch
        d.expect("/dd/status", 10, where=lambda status: status[0] == likes_before + 1)
        pd_status = pd.wait_for("dd: status", 10).split()  # shown in the patch's status row too
        assert int(pd_status[2]) == likes_before + 1, pd_status
    finally:
        pd.close()
    _assert_clean_console(pd.lines)
