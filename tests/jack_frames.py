"""Test helpers for timing in JACK's frames: a MIDI clock leader that writes at exact frames, and the
figures (jitter, rate, lost clocks) of what `jackd.FrameRecorder` heard.

Every wait is for a condition (a port exists, JACK lists a connection), with a deadline.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from deepdrummer_live.testing import wait_for

CLOCK, START, STOP = 0xF8, 0xFA, 0xFC


def connect_when_listed(server, port: str, to: str, timeout: float = 20.0) -> None:
    """Connect JACK port `port` (once JACK lists it: a daemon or player opens it) to `to`; returns once JACK
    itself reports the connection."""
    import os
    import shutil
    import subprocess

    from deepdrummer_live.player.jackd import jack_lsp

    wait_for(lambda: port in (jack_lsp(server) or ""), timeout,
             lambda: f"JACK port {port!r} (its owner opens it); listed: {jack_lsp(server)}", interval=0.05)
    subprocess.run([shutil.which("jack_connect") or "jack_connect", port, to], check=True, timeout=10,
                   env={**os.environ, "JACK_DEFAULT_SERVER": server})
    server.wait_connected(port, to)


class FrameLeader:
    """A JACK client of the test whose output writes scheduled (frame, bytes) at exactly those frames."""

    def __init__(self, server, play_into: str):
        import jack

        self.client = jack.Client("dd-leader", no_start_server=True)
        self.rate, self.period = self.client.samplerate, self.client.blocksize
        self.out = self.client.midi_outports.register("out")
        self._sched: deque = deque()
        self.client.set_process_callback(self._process)
        self.client.activate()
        ports = wait_for(lambda: self.client.get_ports(play_into, is_midi=True, is_input=True), 10,
                         f"a JACK MIDI input like {play_into!r} (the player opens it)", interval=0.05)
        self.client.connect(self.out, ports[0])
        server.wait_connected("dd-leader:out", ports[0].name)

    def _process(self, nframes: int) -> None:
        frame0 = self.client.last_frame_time
        self.out.clear_buffer()
        sched = self._sched
        while sched and sched[0][0] < frame0 + nframes:
            frame, data = sched.popleft()
            self.out.write_midi_event(max(0, frame - frame0), data)

    def schedule(self, events: list[tuple[int, bytes]]) -> None:
        """(frame, bytes) in frame order, each written at its frame (give frames a few periods ahead)."""
        self._sched.extend(events)

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def p99(xs) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.99 * len(xs)))]


def clock_figures(msgs: list[tuple[int, bytes]], nominal: float) -> dict:
    """Of every clock in `msgs` ((frame, bytes)): interval jitter p99 / max in frames, clocks missing,
    and the rate error of a least-squares fit of frame against clock index (per cent)."""
    frames = [f for f, d in msgs if d == bytes([CLOCK])]
    intervals = np.diff(frames)
    index = np.concatenate([[0], np.cumsum(np.maximum(1, np.round(intervals / nominal)))])
    lost = int(index[-1] + 1 - len(frames))
    kept = [abs(iv - nominal) for iv in intervals if round(iv / nominal) <= 1]  # bunched ones too, not lost ones
    slope = np.polyfit(index, frames, 1)[0]
    return {"clocks": len(frames), "lost": lost, "jitter_p99": p99(kept), "jitter_max": max(kept),
            "rate_error_pct": float((slope / nominal - 1.0) * 100.0)}
