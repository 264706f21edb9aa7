"""The JACK MIDI writer process: JACK's process callback, alone in its own interpreter.

`python -m deepdrummer_live.player.jackwriter EVENTS_FD INPUT_FD OUT IN [CLIENT]` opens the client
"DeepDrummer Live" (or CLIENT) with those ports (an empty name: none) and, in JACK's process cycle,
writes every message at its own frame. It is started by player/jackmidi.py, which hands it messages
ahead of their time and reads its input (and by jackd.FrameRecorder, to record what tests hear):

    EVENTS_FD  in:  RECORD (frame mod 2**32, size, bytes) per message, in any order
    INPUT_FD   out: RECORD per MIDI message heard on the input, at its frame
    stdout                 one JSON line once running: {"rate", "period"} or {"error"}
    stdin                  EOF = close: what was handed over goes out (up to its frame), then exit

Why a process of its own: the callback runs Python, so it needs its interpreter's GIL, and in the
player process other threads (engine, pipes) hold it now and then; at a 64-frame period (1.3 ms)
that made JACK cycles late. Here the only other thread is the main one, blocked in select().
Both pipes are non-blocking on this side: the callback never waits on a lock, a full pipe drops
input (counted) and an empty one is simply empty. libjack is called through ctypes.PyDLL, which
keeps the GIL through the calls (JACK-Client's cffi calls release and retake it on every call).
"""

from __future__ import annotations

import ctypes
import gc
import heapq
import itertools
import json
import os
import select
import struct
import sys
import time

CLIENT_NAME = "DeepDrummer Live"  # = midi.CLIENT_NAME; not imported, so this process loads nothing else
RECORD = struct.Struct("<IH2x4s")  # frame (mod 2**32), size, data (<= 4 bytes): 12 bytes, atomic in a pipe
READ_CHUNK = RECORD.size * 1024  # a multiple of the record: every read holds whole records
_HALF = 1 << 31
_WRAP = 1 << 32


def signed32(x: int) -> int:
    """A difference of two frame counters mod 2**32, as a signed distance."""
    x &= _WRAP - 1
    return x - _WRAP if x >= _HALF else x


class _MidiEvent(ctypes.Structure):
    _fields_ = [("time", ctypes.c_uint32), ("size", ctypes.c_size_t), ("buffer", ctypes.c_void_p)]


def _rt_lib(libname: str):
    lib = ctypes.PyDLL(libname)
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
    return lib


class Writer:
    """The process callback's state: the messages waiting for their cycle, in a heap by frame."""

    def __init__(self, client, out_port, in_port, events_fd: int, input_fd: int):
        import jack

        self.lib = _rt_lib(jack._libname)
        self.client_ptr = int(jack._ffi.cast("uintptr_t", client._ptr))
        self.out_ptr = int(jack._ffi.cast("uintptr_t", out_port._ptr)) if out_port is not None else None
        self.in_ptr = int(jack._ffi.cast("uintptr_t", in_port._ptr)) if in_port is not None else None
        self.events_fd, self.input_fd = events_fd, input_fd
        self.pending: list = []
        self.seq = itertools.count()
        self.event = _MidiEvent()
        self.event_ref = ctypes.byref(self.event)
        self.eof = False  # the player closed the events pipe
        self.frames = None  # this cycle's first frame, unwrapped (JACK's counter is 32 bits)
        self.raw = 0
        self.late = 0  # written after their frame: handed over after their cycle had begun
        self.dropped = 0  # refused by JACK (port buffer full) or input lost to a full pipe

    def process(self, nframes: int) -> None:
        lib = self.lib
        raw0 = lib.jack_last_frame_time(self.client_ptr)
        frame0 = raw0 if self.frames is None else self.frames + signed32(raw0 - self.raw)
        self.frames, self.raw = frame0, raw0
        pending = self.pending
        if not self.eof:
            try:
                chunk = os.read(self.events_fd, READ_CHUNK)
            except BlockingIOError:
                chunk = None  # nothing handed over since the last cycle
            if chunk == b"":
                self.eof = True
            elif chunk:
                for frame, size, data in RECORD.iter_unpack(chunk):
                    # frames come mod 2**32: place them relative to this cycle on the unwrapped counter
                    heapq.heappush(pending, (frame0 + signed32(frame - raw0), next(self.seq), data[:size]))
        if self.out_ptr is not None:
            buf = lib.jack_port_get_buffer(self.out_ptr, nframes)
            lib.jack_midi_clear_buffer(buf)
            last, end = 0, frame0 + nframes
            while pending and pending[0][0] < end:
                frame, _, data = heapq.heappop(pending)
                offset = frame - frame0
                if offset < last:  # due before this cycle (handed over late) or behind one just written
                    if offset < 0:
                        self.late += 1
                    offset = last
                if lib.jack_midi_event_write(buf, offset, data, len(data)):
                    self.dropped += 1  # ENOBUFS: the port's buffer is full
                last = offset
        else:
            pending.clear()
        if self.in_ptr is not None:
            buf = lib.jack_port_get_buffer(self.in_ptr, nframes)
            event = self.event
            for i in range(lib.jack_midi_get_event_count(buf)):
                if lib.jack_midi_event_get(self.event_ref, buf, i) or not 0 < event.size <= 4:
                    continue  # sysex and the like: nothing the player reads
                record = RECORD.pack((raw0 + event.time) & (_WRAP - 1), event.size,
                                     ctypes.string_at(event.buffer, event.size))
                try:
                    os.write(self.input_fd, record)
                except BlockingIOError:
                    self.dropped += 1  # the player is not reading: drop rather than wait


def main(argv: list[str]) -> int:
    import jack

    events_fd, input_fd = int(argv[0]), int(argv[1])
    out_name, in_name, client_name = (argv[2:] + ["", "", ""])[:3]
    try:
        client = jack.Client(client_name or CLIENT_NAME, no_start_server=True)
    except jack.JackOpenError as exc:
        print(json.dumps({"error": f"no JACK server ({exc})"}), flush=True)
        return 2
    out_port = client.midi_outports.register(out_name) if out_name else None
    in_port = client.midi_inports.register(in_name) if in_name else None
    os.set_blocking(events_fd, False)
    os.set_blocking(input_fd, False)
    writer = Writer(client, out_port, in_port, events_fd, input_fd)
    wake_r, wake_w = os.pipe()

    def shutdown(status, reason) -> None:
        os.write(wake_w, b"x")  # the server went away: wake the main thread to exit

    client.set_process_callback(writer.process)
    client.set_shutdown_callback(shutdown)
    gc.collect()
    gc.freeze()  # the callback allocates little; the collector then has almost nothing to walk
    client.activate()
    print(json.dumps({"rate": client.samplerate, "period": client.blocksize}), flush=True)
    ready, _, _ = select.select([sys.stdin, wake_r], [], [])
    if wake_r in ready:
        os._exit(3)  # libjack must not touch the dead server's client again (closing it crashes)
    # stdin EOF: the player is closing. The events pipe is closed by then; let the rest go out.
    deadline = time.monotonic() + 2.0
    while not (writer.eof and not writer.pending) and time.monotonic() < deadline:
        time.sleep(client.blocksize / client.samplerate)  # the callback empties it one cycle at a time
    client.deactivate()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
