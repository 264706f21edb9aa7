"""How long after its /dd/loop a new loop shows in the rating page (contract v1.1: within 200 ms).

Starts a daemon (page on, no MIDI, no audio) with an OSC client (deepdrummer_live.client) subscribed
from its start, opens the page in Debian's chromium, then asks for `--loops` new loops with /dd/next.
For each loop, the time its /dd/loop reached the client is compared with the time the page set the loop's
`data-loop-id` (a MutationObserver in the page; both are this machine's wall clock).

Prints one JSON line: loops, latency_ms_p50, latency_ms_p95, latency_ms_max.
Run from the repo root: `.venv/bin/python bench/page_latency.py [--loops 40]`.
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from pathlib import Path

from page_clock import CHROMIUM, LAUNCH_ARGS, free_port
from playwright.sync_api import sync_playwright

from deepdrummer_live.client import OscClient
from deepdrummer_live.testing import Daemon

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
    web_port = free_port(socket.SOCK_STREAM)
    with tempfile.TemporaryDirectory() as tmp, OscClient(0) as client:
        daemon = Daemon(Path(tmp) / "state", "--web-port", str(web_port), seed=3, cwd=REPO, client=client)
        try:
            daemon.start()  # ready: its first /dd/loop reached the client
            arrived: dict[str, float] = {}
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{web_port}/")
                page.wait_for_function("document.querySelector('[data-loop-id]') !== null")
                page.evaluate(OBSERVE)
                last = client.expect("/dd/loop", 0)[0]
                for _ in range(args.loops):
                    client.send("/dd/next")
                    loop_id = client.expect("/dd/loop", 30, lambda a, i=last: a[0] > i)[0]
                    arrived[str(loop_id)] = time.time() * 1000
                    last = loop_id
                    page.wait_for_function(f"window.__shown[{json.dumps(str(loop_id))}] !== undefined",
                                           polling=100)  # raf polling would load the renderer it measures
                shown = page.evaluate("window.__shown")
                browser.close()
        finally:
            daemon.stop(timeout=60)
    latencies = [shown[k] - t for k, t in arrived.items() if k in shown]
    print(json.dumps({"loops": len(latencies), "latency_ms_p50": round(percentile(latencies, 0.5), 1),
                      "latency_ms_p95": round(percentile(latencies, 0.95), 1),
                      "latency_ms_max": round(max(latencies), 1)}))


if __name__ == "__main__":
    main()
