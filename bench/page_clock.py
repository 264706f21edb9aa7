"""Does the rating page disturb the beat? MIDI clock jitter at a real JACK port, page closed vs open and clicking.

Starts a private jackd (dummy driver), the daemon on it (`--midi-backend jack --autoplay`, page on),
and timestamps every MIDI clock of its output port on the JACK side (rtmidi delta times, taken in
JACK's process cycle). Phase 1: `--seconds` with no page. Phase 2: the same with the page open in
Debian's chromium and a button pressed every `--click-ms` (Next and Like in turn, so the daemon
also rates, trains and switches loops). The player process owns the clock; the page's server runs
in the daemon process, so only CPU load can reach the clock.

Prints one JSON line per phase: clocks, clocks_lost, jitter_median_ms, jitter_p99_ms, jitter_max_ms
(|interval - nominal| of clocks not lost), clicks. Run from the repo root:
`.venv/bin/python -m bench.page_clock [--seconds 20] [--click-ms 250]`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from deepdrummer_live.player.jackd import start_jack_server

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
BPM = 120.0
NOMINAL = 60.0 / (BPM * 24)  # seconds between MIDI clocks


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ClockProbe:
    """A JACK MIDI input on the daemon's port; `times` are the clocks' JACK-side timestamps (s)."""

    def __init__(self, port_part: str, timeout: float = 180.0):
        import rtmidi

        self.midi = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, "dd-page-clock-probe", queue_size_limit=1 << 16)
        self.midi.ignore_types(sysex=True, timing=False, active_sense=True)
        deadline = time.monotonic() + timeout
        while not any(port_part in p for p in self.midi.get_ports()):
            if time.monotonic() > deadline:
                sys.exit(f"no JACK MIDI port {port_part!r} within {timeout:g} s: {self.midi.get_ports()}")
            time.sleep(0.2)  # the daemon is still warming up; its port appears when ready
        self.midi.open_port(next(i for i, p in enumerate(self.midi.get_ports()) if port_part in p))
        self.times: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()

    def _collect(self) -> None:
        t = 0.0
        while not self.stop.is_set():
            m = self.midi.get_message()
            if m is None:
                time.sleep(0.01)
                continue
            t += m[1]
            if m[0] == [0xF8]:
                self.times.append(t)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.midi.close_port()


def jitter(times: list[float]) -> dict:
    intervals = [b - a for a, b in zip(times, times[1:])]
    kept = sorted(abs(iv - NOMINAL) for iv in intervals if iv < 1.5 * NOMINAL)
    lost = sum(max(0, round(iv / NOMINAL) - 1) for iv in intervals)
    return {"clocks": len(times), "clocks_lost": lost,
            "jitter_median_ms": round(kept[len(kept) // 2] * 1000, 3),
            "jitter_p99_ms": round(kept[min(len(kept) - 1, int(0.99 * len(kept)))] * 1000, 3),
            "jitter_max_ms": round(kept[-1] * 1000, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--click-ms", type=float, default=250.0)
    args = ap.parse_args()
    jack = start_jack_server()  # a JackServer: its name (a str) and process
    jack_name = str(jack)
    env = {**os.environ, "JACK_DEFAULT_SERVER": jack_name}
    web_port = free_port(socket.SOCK_STREAM)
    tmp = tempfile.TemporaryDirectory()
    log = open(Path(tmp.name) / "daemon.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "deepdrummer_live.cli.main", "run", "--headless",
                             "--state-dir", str(Path(tmp.name) / "state"), "--seed", "5",
                             "--osc-port", str(free_port(socket.SOCK_DGRAM)), "--web-port", str(web_port),
                             "--midi-backend", "jack", "--midi-out", "ddpageclock", "--audio", "none",
                             "--tempo", str(BPM), "--autoplay"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    os.environ["JACK_DEFAULT_SERVER"] = jack_name
    probe = None
    try:
        probe = ClockProbe("ddpageclock")
        time.sleep(2.0)  # settle: the first clocks after connecting arrive mid-stream
        start = len(probe.times)
        time.sleep(args.seconds)
        quiet = jitter(probe.times[start:])
        clicks = 0
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{web_port}/")
            page.wait_for_function("document.getElementById('conn').textContent === 'connected'")
            start = len(probe.times)
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                page.get_by_role("button", name="Next" if clicks % 2 else "Like", exact=True).click()
                clicks += 1
                page.wait_for_timeout(args.click_ms)  # the click rate is the load being measured
            busy = jitter(probe.times[start:])
            browser.close()
    finally:
        if probe is not None:
            probe.close()
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
        jack.stop()
        tmp.cleanup()
    common = {"bpm": BPM, "seconds": args.seconds, "load_avg_1min": round(os.getloadavg()[0], 2),
              "cpus": os.cpu_count()}
    print(json.dumps({"phase": "page closed", **quiet, **common}))
    print(json.dumps({"phase": "page open, clicking", "clicks": clicks, "click_ms": args.click_ms, **busy, **common}))


if __name__ == "__main__":
    main()
