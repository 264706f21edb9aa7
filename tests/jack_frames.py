"""Test helper: a JACK client of the test that hears MIDI with each message's frame (and can lead a MIDI clock
to the frame), so timing is measured in JACK's own frames, not by when this process got around to reading.

Every wait is for a condition (a message arrived, JACK lists a connection), with a deadline.
"""

from __future__ import annotations

import threading
import time
from collections import deque

CLOCK, START, STOP = 0xF8, 0xFA, 0xFC


class FrameProbe:
    """`rec`: (frame, bytes) of everything heard on the input, in order. `lead(...)` writes a clock."""

    def __init__(self, server, listen_to: str | None = None, play_into: str | None = None):
        import jack

        self.server = server
        self.client = jack.Client("dd-frame-probe", no_start_server=True)
        self.rate = self.client.samplerate
        self.period = self.client.blocksize
        self.inport = self.client.midi_inports.register("in")
        self.outport = self.client.midi_outports.register("out")
        self.rec: deque = deque()
        self.cond = threading.Condition()
        self._sched: deque = deque()  # (frame, bytes) to write, in frame order
        self.written: list = []  # (frame, bytes) actually written
        self.client.set_process_callback(self._process)
        self.client.activate()
        self._connect(listen_to, play_into)

    def _connect(self, listen_to, play_into) -> None:
        deadline = time.monotonic() + 10
        for substring, is_output in ((listen_to, True), (play_into, False)):
            if substring is None:
                continue
            while not (ports := [p for p in self.client.get_ports(substring, is_midi=True, is_output=is_output,
                                                                   is_input=not is_output)]):
                assert time.monotonic() < deadline, f"no JACK MIDI port like {substring!r}"
                time.sleep(0.05)  # poll interval while the player opens its port
            if is_output:
                self.client.connect(ports[0], self.inport)
                self.server.wait_connected(ports[0].name, "dd-frame-probe:in")
            else:
                self.client.connect(self.outport, ports[0])
                self.server.wait_connected("dd-frame-probe:out", ports[0].name)

    def _process(self, nframes: int) -> None:
        frame0 = self.client.last_frame_time
        got = [(frame0 + off, bytes(buf)) for off, buf in self.inport.incoming_midi_events()]
        self.outport.clear_buffer()
        sched = self._sched
        while sched and sched[0][0] < frame0 + nframes:
            frame, data = sched.popleft()
            offset = max(0, frame - frame0)
            self.outport.write_midi_event(offset, data)
            self.written.append((frame0 + offset, data))
        if got:
            with self.cond:
                self.rec.extend(got)
                self.cond.notify_all()

    def now_frame(self) -> int:
        return self.client.frame_time

    def schedule(self, events: list[tuple[int, bytes]]) -> None:
        """Write these (frame, bytes), in frame order, each at its frame (frames after now + a period)."""
        self._sched.extend(events)

    def wait_for(self, pred, timeout: float = 15.0) -> list[tuple[int, bytes]]:
        """Everything heard so far, once `pred(bytes)` accepted one message; AssertionError at the deadline."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not any(pred(d) for _, d in self.rec):
                left = deadline - time.monotonic()
                assert left > 0, f"no matching MIDI within {timeout} s; last: {list(self.rec)[-8:]}"
                self.cond.wait(left)
            return list(self.rec)

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.99 * len(xs)))]


def clock_figures(rec, nominal_frames: float) -> dict:
    """Clock interval jitter (frames) and rate error of every clock heard, and how many went missing."""
    clocks = [f for f, d in rec if d == bytes([CLOCK])]
    intervals = [b - a for a, b in zip(clocks, clocks[1:])]
    lost = sum(max(0, round(iv / nominal_frames) - 1) for iv in intervals)
    kept = [abs(iv - nominal_frames) for iv in intervals if round(iv / nominal_frames) == 1]
    n = round((clocks[-1] - clocks[0]) / nominal_frames)
    rate = (clocks[-1] - clocks[0]) / n / nominal_frames - 1.0
    return {"clocks": len(clocks), "lost": lost, "jitter_p99": p99(kept), "jitter_max": max(kept),
            "rate_error_pct": rate * 100}
