"""Test helpers: real JACK MIDI ports of the test process, connected to the daemon's or player's ports.

Every helper waits for a condition (a port exists, JACK reports the connection, a message arrived),
with a deadline; none sleeps in place of one.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from deepdrummer_live.testing import wait_for

ALL_NOTES_OFF = [0xB9, 123, 0]
START, CLOCK = 0xFA, 0xF8
POLL_S = 0.002  # rtmidi has no blocking read: poll interval, never a proof


@contextmanager
def jack_port(server, kind: str, substring: str, timeout: float = 10.0):
    """A MIDI port of this process connected to the first JACK port whose name contains `substring`.

    kind "in" listens to that (output) port; "out" plays into that (input) port. Yields once JACK
    itself reports the connection (`server.wait_connected`), so nothing sent or played is lost to
    a connection still in progress. Closed on exit.
    """
    import rtmidi

    if kind == "in":
        port = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, "dd-probe-in", queue_size_limit=65536)
        port.ignore_types(sysex=False, timing=False, active_sense=True)
    else:
        port = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "dd-probe-out")
    deadline = time.monotonic() + timeout
    found = wait_for(lambda: [i for i, p in enumerate(port.get_ports()) if substring in p], timeout,
                     lambda: f"a JACK MIDI port containing {substring!r} (have {port.get_ports()})", interval=0.05)
    port.open_port(found[0], kind)
    try:
        server.wait_connected(f"dd-probe-{kind}", substring, timeout=max(1.0, deadline - time.monotonic()))
        yield port
    finally:
        port.close_port()


def collect_until(port, pred, timeout: float = 10.0, into: list | None = None) -> list[tuple[float, list[int]]]:
    """(time, bytes) of every message from `port` up to and including the first that `pred(bytes)`
    accepts; times are seconds since the first message of `into` (or of this call). AssertionError,
    with what came, when none does within `timeout`."""
    out = [] if into is None else into

    def matched() -> bool:  # what the port holds now, up to the first match (the rest stays in the port)
        while (msg := port.get_message()) is not None:
            data, delta = msg
            out.append(((out[-1][0] + delta) if out else 0.0, data))
            if pred(data):
                return True
        return False

    wait_for(matched, timeout, lambda: f"matching MIDI; last: {[d for _, d in out[-8:]]}", interval=POLL_S)
    return out


def send_clock(port, bpm: float, n: int, t0: float | None = None) -> float:
    """n MIDI clocks at `bpm` on absolute times (sleep, then spin: sleep alone is late by up to a
    tick); returns when the next clock would be due."""
    interval = 60.0 / (bpm * 24)
    t0 = time.perf_counter() if t0 is None else t0
    for i in range(n):
        target = t0 + i * interval
        while (left := target - time.perf_counter()) > 0.001:
            time.sleep(left - 0.001)
        while time.perf_counter() < target:
            pass
        port.send_message([CLOCK])
    return t0 + n * interval


def clocks_since_start(msgs) -> int:
    """MIDI clocks after the last Start in `msgs`."""
    data = [d for _, d in msgs]
    starts = [i for i, d in enumerate(data) if d[0] == START]
    return sum(1 for d in data[starts[-1]:] if d[0] == CLOCK) if starts else 0


def clocks_after_start(n: int, so_far: list | None = None):
    """A `collect_until` predicate: true at the n-th MIDI clock after Start, counting those already
    in `so_far` (the list the collection continues)."""
    started = bool(so_far) and any(d[0] == START for _, d in so_far)
    seen = {"started": started, "clocks": clocks_since_start(so_far) if started else 0}

    def pred(data: list[int]) -> bool:
        if data[0] == START:
            seen["started"], seen["clocks"] = True, 0
        elif data[0] == CLOCK and seen["started"]:
            seen["clocks"] += 1
        return seen["clocks"] >= n

    return pred
