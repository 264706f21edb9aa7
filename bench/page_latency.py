"""How long after its /dd/loop a new loop shows in the rating page (contract v1.1: within 200 ms).

Starts a daemon (page on, no MIDI, no audio), opens the page in Debian's chromium, subscribes a
UDP socket to the daemon's OSC, then asks for `--loops` new loops with /dd/next. For each loop,
the time its /dd/loop reached the UDP socket is compared with the time the page set the loop's
`data-loop-id` (a MutationObserver in the page; both are this machine's wall clock).

Prints one JSON line: loops, latency_ms_p50, latency_ms_p95, latency_ms_max.
Run from the repo root: `.venv/bin/python bench/page_latency.py [--loops 40]`.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from page_clock import CHROMIUM, LAUNCH_ARGS, free_port
from playwright.sync_api import sync_playwright
from pythonosc.osc_message import OscMessage

from deepdrummer_live.surfaces.osc import encode

REPO = Path(__file__).resolve().parents[1]
OBSERVE = """() => {
  window.__shown = {};
  const el = document.getElementById("loop");
  new MutationObserver(() => { window.__shown[el.dataset.loopId] = performance.timeOrigin + performance.now(); })
    .observe(el, { attributes: true, attributeFilter: ["data-loop-id"] });
}"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", type=int, default=40)
    args = parser.parse_args()
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    osc_port, web_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "daemon.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "deepdrummer_live.cli.main", "run", "--headless",
                                     "--state-dir", str(Path(tmp) / "state"), "--seed", "3",
                                     "--osc-port", str(osc_port), "--web-port", str(web_port),
                                     "--notify", f"127.0.0.1:{listener.getsockname()[1]}",
                                     "--midi-backend", "none", "--audio", "none"],
                                    cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        try:
            listener.settimeout(180)
            while True:  # the first /dd/loop: the daemon is up
                if OscMessage(listener.recv(65536)).address == "/dd/loop":
                    break
            arrived: dict[str, float] = {}
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{web_port}/")
                page.wait_for_function("document.querySelector('[data-loop-id]') !== null")
                page.evaluate(OBSERVE)
                listener.settimeout(30)
                for _ in range(args.loops):
                    listener.sendto(encode("/dd/next"), ("127.0.0.1", osc_port))
                    while True:
                        msg = OscMessage(listener.recv(65536))
                        if msg.address == "/dd/loop":
                            arrived[str(msg.params[0])] = time.time() * 1000
                            break
                    page.wait_for_function(f"window.__shown[{json.dumps(str(msg.params[0]))}] !== undefined",
                                           polling=100)  # raf polling would load the renderer it measures
                shown = page.evaluate("window.__shown")
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    latencies = [shown[k] - t for k, t in arrived.items() if k in shown]
    print(json.dumps({"loops": len(latencies), "latency_ms_p50": round(percentile(latencies, 0.5), 1),
                      "latency_ms_p95": round(percentile(latencies, 0.95), 1),
                      "latency_ms_max": round(max(latencies), 1)}))


if __name__ == "__main__":
    main()
