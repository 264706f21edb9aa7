"""JACK MIDI ports that write every message at its own frame, at any JACK period.

python-rtmidi's JACK ports write whatever they are given at frame 0 of the next cycle: up to one
period late (21 ms at 1024 frames). Here the engine hands each message over ahead of its time, with
that time, and JACK's process callback (JACK-Client, in the player process) writes it in the cycle
that holds its frame, at its offset in that cycle. Input gets its frame time the same way, so the
MIDI clock follower reads the leader's clock to the frame.

Time is JACK's own: `clock()` is the server's frame counter in seconds (unwrapped, continued across
a restarted server), and the player's engine schedules on it, so a tick due at t goes out at frame
round(t x rate) and the clock's rate is the audio's. The engine runs `lookahead` ahead of it: one
period (the callback of the cycle holding a frame runs when that cycle starts) plus a margin for a
late engine thread.

Engine thread -> callback: a collections.deque (append and popleft are atomic under the GIL, never
wait on a lock); the callback moves what arrived into its own heap and writes what falls in this
cycle. It allocates only the heap entries it pops and the input it forwards. The callback runs in
JACK's realtime thread but needs this process's GIL: the engine thread does not spin with these
ports, and the pipe threads run at SCHED_FIFO 1, so it waits at most a short Python step.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import sys
import time
from collections import deque
from collections.abc import Callable

from deepdrummer_live.errors import UsageError
from deepdrummer_live.player.midi import CLIENT_NAME

LOOKAHEAD_MARGIN_S = 0.015  # engine thread wake-up late by this much under load still writes on time
_WRAP = 1 << 32  # jack_nframes_t
_dead_clients: list = []  # clients of a server that died: never closed nor freed (libjack would crash)


class _MidiEvent(ctypes.Structure):
    _fields_ = [("time", ctypes.c_uint32), ("size", ctypes.c_size_t), ("buffer", ctypes.c_void_p)]


_libjack = None


def _rt_lib():
    """libjack through ctypes.PyDLL, for the calls inside the process callback.

    JACK-Client's cffi calls release the GIL around every C call; in the callback each release is a
    chance for another thread to take it, and the callback then waits up to the switch interval to get
    it back (at 64 frames that missed cycles). PyDLL keeps the GIL through these short calls.
    """
    global _libjack
    if _libjack is None:
        import jack

        lib = ctypes.PyDLL(jack._libname)
        lib.jack_last_frame_time.argtypes = [ctypes.c_void_p]
        lib.jack_last_frame_time.restype = ctypes.c_uint32
        lib.jack_port_get_buffer.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.jack_port_get_buffer.restype = ctypes.c_void_p
        lib.jack_midi_clear_buffer.argtypes = [ctypes.c_void_p]
        lib.jack_midi_clear_buffer.restype = None
        lib.jack_midi_event_write.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p, ctypes.c_size_t]
        lib.jack_midi_event_write.restype = ctypes.c_int
        lib.jack_midi_get_event_count.argtypes = [ctypes.c_void_p]
        lib.jack_midi_get_event_count.restype = ctypes.c_uint32
        lib.jack_midi_event_get.argtypes = [ctypes.POINTER(_MidiEvent), ctypes.c_void_p, ctypes.c_uint32]
        lib.jack_midi_event_get.restype = ctypes.c_int
        _libjack = lib
    return _libjack


def _address(cdata) -> int:
    import jack

    return int(jack._ffi.cast("uintptr_t", cdata))


def unavailable() -> str | None:
    """Why the frame-accurate writer cannot be had here (JACK-Client or libjack missing), or None."""
    try:
        import jack  # noqa: F401  (loads libjack through cffi)
    except (ImportError, OSError) as exc:
        return f"JACK-Client is not usable ({exc}); pip install JACK-Client (needs libjack from jackd2)"
    return None


class _Unwrap:
    """JACK's 32-bit frame counter as an ever-growing int (one per thread that reads it)."""

    def __init__(self, raw: int, base: int):
        self.last = raw
        self.high = base

    def __call__(self, raw: int) -> int:
        if raw < self.last - (_WRAP >> 1):
            self.high += _WRAP
        elif raw > self.last + (_WRAP >> 1):  # a late reader of a value from before the wrap
            return self.high - _WRAP + raw
        self.last = raw
        return self.high + raw


class JackMidiPorts:
    """A JACK client with one MIDI output (and optionally an input) placing messages at their frame.

    Same face as midi.MidiPorts (open, alive, close, names) plus `send_at(bytes, t)`, `lookahead`
    and `clock()`. `on_input(bytes, t)` is called from JACK's thread with t on `clock()`: only queue.
    """

    writer = "jack-frames"

    def __init__(self, out_name: str | None, in_name: str | None,
                 on_input: Callable[[list[int], float], None] | None = None, continue_from: float | None = None):
        self.out_name = out_name
        self.in_name = in_name
        self._on_input = on_input
        self._continue_from = continue_from  # the previous ports' clock(): time never jumps back on a reopen
        self._client = None
        self._out = None
        self._in = None
        self._inq: deque = deque()  # (frame, seq, bytes) from the engine thread
        self._pending: list = []  # the callback's heap
        self._seq = itertools.count()
        self.rate = 48000
        self.period = 0
        self.lookahead = 0.0
        self.healthy = False
        self._dead = False
        self.late = 0  # messages written after their frame (handed over too late: at the cycle's start)
        self.dropped = 0  # messages JACK refused (a full port buffer)
        self._last_clock = (0.0, time.perf_counter())  # (clock(), perf_counter()) of the last good reading

    @property
    def out_full_name(self) -> str | None:
        return f"{CLIENT_NAME}:{self.out_name}" if self._out is not None else None

    @property
    def in_full_name(self) -> str | None:
        return f"{CLIENT_NAME}:{self.in_name}" if self._in is not None else None

    def open(self) -> None:
        """Open the client and ports; UsageError with the fix when there is no JACK server."""
        import jack

        try:
            client = jack.Client(CLIENT_NAME, no_start_server=True)
        except jack.JackOpenError as exc:
            raise UsageError("--midi-backend jack: no JACK server running; start jackd "
                             "or use --midi-backend alsa/none") from exc
        self._client = client
        self.rate = client.samplerate
        self.period = client.blocksize
        self.lookahead = self.period / self.rate + LOOKAHEAD_MARGIN_S
        raw = client.frame_time
        base = 0 if self._continue_from is None else round(self._continue_from * self.rate) - raw
        self._clock_unwrap = _Unwrap(raw, base)
        self._cycle_unwrap = _Unwrap(raw, base)
        self._last_clock = ((base + raw) / self.rate, time.perf_counter())
        try:
            if self.out_name:
                self._out = client.midi_outports.register(self.out_name)
            if self.in_name:
                self._in = client.midi_inports.register(self.in_name)
            self._lib = _rt_lib()
            self._event = _MidiEvent()
            self._event_ref = ctypes.byref(self._event)
            self._client_ptr = _address(client._ptr)
            self._out_ptr = _address(self._out._ptr) if self._out is not None else None
            self._in_ptr = _address(self._in._ptr) if self._in is not None else None
            client.set_process_callback(self._process)
            client.set_shutdown_callback(self._shutdown)
            client.activate()
        except jack.JackError as exc:
            self.close()
            raise UsageError(f"--midi-backend jack: cannot open port ({exc}); check the JACK server "
                             f"or use --midi-backend none") from exc
        self.healthy = True

    # -- engine thread -----------------------------------------------------------------------------

    def clock(self) -> float:
        """Seconds on the JACK server's frame counter; while the server is gone, carried on by perf_counter."""
        if self._dead or self._client is None:
            t, p = self._last_clock
            return t + (time.perf_counter() - p)
        t = self._clock_unwrap(self._client.frame_time) / self.rate
        self._last_clock = (t, time.perf_counter())
        return t

    def send_at(self, data: list[int], t: float) -> None:
        """`data` out at frame round(t x rate); hand it over at least `lookahead` before t."""
        if self.healthy:
            self._inq.append((round(t * self.rate), next(self._seq), bytes(data)))

    def send(self, data: list[int]) -> None:
        """Now: at the next cycle's start."""
        self.send_at(data, self.clock())

    def alive(self) -> bool:
        return self.healthy and not self._dead

    def close(self, drain_timeout: float | None = None) -> None:
        """Let what was handed over go out (up to its time), then deactivate and close the client."""
        client = self._client
        self.healthy = False  # nothing more is accepted
        if client is None:
            return
        if self._dead:
            self._client = None
            _dead_clients.append(client)  # libjack crashes closing a client of a dead server
            return
        deadline = time.monotonic() + (self.lookahead + 2 * self.period / self.rate + 0.05
                                       if drain_timeout is None else drain_timeout)
        while (self._inq or self._pending) and time.monotonic() < deadline and not self._dead:
            time.sleep(self.period / self.rate)  # the callback empties them one cycle at a time
        self._client = None
        try:
            client.deactivate()
            client.close()
        except Exception as exc:  # JACK-Client raises JackError and others on a server going away
            print(f"deepdrummer-live: closing JACK MIDI client: {exc}", file=sys.stderr)

    # -- JACK's threads ----------------------------------------------------------------------------

    def _shutdown(self, status, reason) -> None:
        self._dead = True  # the engine's housekeeping sees alive() false and reopens

    def _process(self, nframes: int) -> None:
        """JACK's process callback: write what falls in this cycle at its offset, forward input with its frame."""
        lib = self._lib
        frame0 = self._cycle_unwrap(lib.jack_last_frame_time(self._client_ptr))
        inq, pending = self._inq, self._pending
        while inq:
            heapq.heappush(pending, inq.popleft())
        if self._out_ptr is not None:
            buf = lib.jack_port_get_buffer(self._out_ptr, nframes)
            lib.jack_midi_clear_buffer(buf)
            end = frame0 + nframes
            last = 0
            while pending and pending[0][0] < end:
                frame, _, data = heapq.heappop(pending)
                offset = frame - frame0
                if offset < last:  # due before this cycle (handed over late) or at a taken offset
                    if offset < 0:
                        self.late += 1
                    offset = last
                if lib.jack_midi_event_write(buf, offset, data, len(data)):
                    self.dropped += 1  # the port's buffer is full (ENOBUFS)
                last = offset
        else:
            pending.clear()
        if self._in_ptr is not None and self._on_input is not None:
            buf = lib.jack_port_get_buffer(self._in_ptr, nframes)
            event, ref, rate = self._event, self._event_ref, self.rate
            for i in range(lib.jack_midi_get_event_count(buf)):
                if lib.jack_midi_event_get(ref, buf, i) == 0:
                    self._on_input(list(ctypes.string_at(event.buffer, event.size)), (frame0 + event.time) / rate)
