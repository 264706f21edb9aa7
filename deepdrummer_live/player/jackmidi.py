"""JACK MIDI ports that put every message at its own frame, at any JACK period (the player's side).

python-rtmidi's JACK ports write whatever they are given at frame 0 of the next cycle: up to one
period late (21 ms at 1024 frames). Here the engine hands each message over ahead of its time, with
that time, to the writer process (player/jackwriter.py), whose JACK process callback writes it in the
cycle that holds its frame, at its offset there. Input comes back with its frame, so the MIDI clock
follower reads the leader's clock to the frame.

Time is JACK's own: `clock()` is the server's frame counter in seconds (read through a second,
never activated client of this process; unwrapped, and continued across a restarted server), and
the engine schedules on it, so a tick due at t goes out at frame round(t x rate) and the clock runs
at the audio's rate. The engine runs `lookahead` ahead of it: one period (the callback of the cycle
holding a frame runs when that cycle starts) plus LOOKAHEAD_MARGIN_S for a late engine thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from deepdrummer_live.errors import UsageError
from deepdrummer_live.player.jackwriter import READ_CHUNK, RECORD, signed32
from deepdrummer_live.player.midi import CLIENT_NAME

LOOKAHEAD_MARGIN_S = 0.015  # an engine thread waking this much late still hands messages over in time
START_TIMEOUT_S = 20.0  # the writer process: interpreter start, libjack, client
_dead_clients: list = []  # clients of a server that died: never closed nor freed (libjack would crash)


def unavailable() -> str | None:
    """Why the frame-accurate writer cannot be had here (JACK-Client or libjack missing), or None."""
    try:
        import jack  # noqa: F401  (loads libjack through cffi)
    except (ImportError, OSError) as exc:
        return f"JACK-Client is not usable ({exc}); pip install JACK-Client (needs libjack from jackd2)"
    return None


class JackMidiPorts:
    """One JACK MIDI output (and optionally an input) whose messages go out at their frame.

    Same face as midi.MidiPorts (open, alive, close, names, writer) plus `send_at(bytes, t)`,
    `lookahead` and `clock()`. `on_input(bytes, t)` is called from this object's reader thread with
    t on `clock()`: only queue.
    """

    writer = "jack-frames"

    def __init__(self, out_name: str | None, in_name: str | None,
                 on_input: Callable[[list[int], float], None] | None = None, continue_from: float | None = None):
        self.out_name = out_name or None
        self.in_name = in_name or None
        self._on_input = on_input
        self._continue_from = continue_from  # the previous ports' clock(): time never jumps back on a reopen
        self._clock_client = None
        self._proc: subprocess.Popen | None = None
        self._events_w: int | None = None
        self._reader: threading.Thread | None = None
        self.rate = 48000
        self.period = 0
        self.lookahead = 0.0
        self.healthy = False
        self._dead = False
        self._base = 0  # frames added to JACK's counter (continuity across a restarted server)
        self._anchor = (0, 0)  # (JACK's 32-bit counter, its unwrapped value + _base) at the last clock()
        self._last_clock = (0.0, time.perf_counter())  # (clock(), perf_counter()) of the last good reading
        self.send_failures = 0

    @property
    def out_full_name(self) -> str | None:
        return f"{CLIENT_NAME}:{self.out_name}" if self.out_name and self.healthy else None

    @property
    def in_full_name(self) -> str | None:
        return f"{CLIENT_NAME}:{self.in_name}" if self.in_name and self.healthy else None

    def open(self) -> None:
        """Start the writer process and the clock client; UsageError with the fix when JACK is not there."""
        import jack

        try:
            clock_client = jack.Client(f"{CLIENT_NAME} clock", no_start_server=True)
        except jack.JackOpenError as exc:
            raise UsageError("--midi-backend jack: no JACK server running; start jackd "
                             "or use --midi-backend alsa/none") from exc
        clock_client.set_shutdown_callback(self._shutdown)
        self._clock_client = clock_client
        self.rate = clock_client.samplerate
        self.period = clock_client.blocksize
        self.lookahead = self.period / self.rate + LOOKAHEAD_MARGIN_S
        raw = clock_client.frame_time
        self._base = 0 if self._continue_from is None else round(self._continue_from * self.rate) - raw
        self._anchor = (raw, raw + self._base)
        self._last_clock = ((raw + self._base) / self.rate, time.perf_counter())
        try:
            self._start_writer()
        except UsageError:
            self.close()
            raise
        self.healthy = True

    def _start_writer(self) -> None:
        events_r, events_w = os.pipe()
        input_r, input_w = os.pipe()
        package_root = str(Path(__file__).resolve().parents[2])  # this copy of the package, wherever it runs
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                                          os.environ.get("PYTHONPATH")]))}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "deepdrummer_live.player.jackwriter", str(events_r), str(input_w),
             self.out_name or "", self.in_name or ""],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, pass_fds=(events_r, input_w))
        os.close(events_r)
        os.close(input_w)
        self._events_w = events_w
        line = self._ready_line()
        if "error" in line:
            os.close(input_r)
            raise UsageError(f"--midi-backend jack: {line['error']}; start jackd or use --midi-backend alsa/none")
        self._reader = threading.Thread(target=self._read_input, args=(input_r,), name="dd-jack-input", daemon=True)
        self._reader.start()

    def _ready_line(self) -> dict:
        """The writer's first stdout line, within START_TIMEOUT_S."""
        import select

        deadline = time.monotonic() + START_TIMEOUT_S
        out = self._proc.stdout
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([out], [], [], max(0.0, left))
            if ready:
                text = out.readline()
                if not text:
                    return {"error": f"the JACK MIDI writer process exited (code {self._proc.wait(5)})"}
                return json.loads(text)
            if left <= 0:
                return {"error": f"the JACK MIDI writer process did not start within {START_TIMEOUT_S:g} s"}

    # -- engine thread -----------------------------------------------------------------------------

    def clock(self) -> float:
        """Seconds on the JACK server's frame counter; while the server is gone, carried on by perf_counter."""
        if self._dead or self._clock_client is None:
            t, p = self._last_clock
            return t + (time.perf_counter() - p)
        raw = self._clock_client.frame_time
        last_raw, frames = self._anchor
        frames += signed32(raw - last_raw)
        self._anchor = (raw, frames)  # one assignment: the input thread reads a consistent pair
        t = frames / self.rate
        self._last_clock = (t, time.perf_counter())
        return t

    def send_at(self, data: list[int], t: float) -> None:
        """`data` (at most 4 bytes) out at frame round(t x rate); hand it over `lookahead` before t."""
        if not self.healthy or self._events_w is None:
            return
        frame = (round(t * self.rate) - self._base) & 0xFFFFFFFF
        try:
            os.write(self._events_w, RECORD.pack(frame, len(data), bytes(data)))
        except (BrokenPipeError, OSError) as exc:  # the writer process is gone (its server died)
            self.healthy = False
            raise ConnectionError(f"JACK MIDI writer gone ({exc})") from exc

    def send(self, data: list[int]) -> None:
        """Now: at the next cycle's start."""
        self.send_at(data, self.clock())

    def alive(self) -> bool:
        return self.healthy and not self._dead and self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        """Close the events pipe and the writer's stdin: it writes what it has (up to its frame), then exits."""
        self.healthy = False
        if self._events_w is not None:
            os.close(self._events_w)
            self._events_w = None
        if self._proc is not None:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass  # it already exited (its server died)
            try:
                self._proc.wait(self.lookahead + 5.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
            self._proc.stdout.close()
            self._proc = None
        if self._reader is not None:
            self._reader.join(2.0)
            self._reader = None
        client, self._clock_client = self._clock_client, None
        if client is not None:
            if self._dead:
                _dead_clients.append(client)  # libjack crashes closing a client of a dead server
            else:
                client.close()

    # -- other threads -----------------------------------------------------------------------------

    def _shutdown(self, status, reason) -> None:
        self._dead = True  # JACK's thread: only a flag; the engine's housekeeping sees alive() false

    def _read_input(self, fd: int) -> None:
        """Input from the writer, each message with its frame, as clock() seconds; until the writer exits."""
        try:
            while True:
                chunk = os.read(fd, READ_CHUNK)
                if not chunk:
                    return
                if self._on_input is None:
                    continue
                raw_now, frames_now = self._anchor
                for frame, size, data in RECORD.iter_unpack(chunk):
                    t = (frames_now + signed32(frame - raw_now)) / self.rate
                    self._on_input(list(data[:size]), t)
        finally:
            os.close(fd)
