"""MIDI ports and message bytes: virtual out/in ports via mido's rtmidi backend.

Only the player process opens ports. Message builders return plain byte lists so the
bytes that go on the wire are unit-testable ("golden bytes") without any MIDI system.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from deepdrummer_live.errors import UsageError
from deepdrummer_live.vocab import DRUM_CHANNEL, MIDI_BACKENDS

BACKENDS = MIDI_BACKENDS
# Our backend names -> rtmidi API names as mido spells them.
RTMIDI_APIS = {
    "alsa": "LINUX_ALSA",
    "jack": "UNIX_JACK",
    "coremidi": "MACOSX_CORE",
    "winmm": "WINDOWS_MM",
}
CLIENT_NAME = "DeepDrummer Live"
NOTE_VELOCITY = 100

# System realtime / common status bytes.
CLOCK = 0xF8
START = 0xFA
CONTINUE = 0xFB
STOP = 0xFC
SONG_POSITION = 0xF2
REALTIME = {CLOCK, START, CONTINUE, STOP}
ALSA_SEQ = "/dev/snd/seq"
ALL_NOTES_OFF_CC = 123


def default_backend() -> str | None:
    """The MIDI system `run` uses without --midi-backend: the platform's own (Linux: the ALSA
    sequencer, else a running JACK server); None when none looks usable (run without MIDI)."""
    if sys.platform == "darwin":
        return "coremidi"
    if sys.platform.startswith("win"):
        return "winmm"
    if os.path.exists(ALSA_SEQ):
        return "alsa"
    if jack_server_running():
        return "jack"
    return None


# ---- message bytes -------------------------------------------------------------------------

def note_on(note: int, velocity: int = NOTE_VELOCITY, channel: int = DRUM_CHANNEL) -> list[int]:
    return [0x90 | channel, note & 0x7F, velocity & 0x7F]


def note_off(note: int, channel: int = DRUM_CHANNEL) -> list[int]:
    return [0x80 | channel, note & 0x7F, 0]


def all_notes_off(channel: int = DRUM_CHANNEL) -> list[int]:
    return [0xB0 | channel, ALL_NOTES_OFF_CC, 0]


def song_position(sixteenths: int) -> list[int]:
    """Song Position Pointer; its unit (a "MIDI beat") is 6 clocks, i.e. one 16th note."""
    if not 0 <= sixteenths < 1 << 14:
        raise ValueError(f"song position {sixteenths} out of range 0..16383")
    return [SONG_POSITION, sixteenths & 0x7F, (sixteenths >> 7) & 0x7F]


def parse_song_position(data: list[int] | bytes) -> int:
    return (data[1] & 0x7F) | ((data[2] & 0x7F) << 7)


# ---- ports ---------------------------------------------------------------------------------

def _jack_server_socket() -> Path | None:
    """The JACK server's socket, used as a cheap liveness check (no client round trip)."""
    server = os.environ.get("JACK_DEFAULT_SERVER", "default")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    for base in ("/dev/shm", "/tmp"):
        path = Path(base) / f"jack_{server}_{uid}_0"
        if path.exists():
            return path
    return None


def jack_server_running() -> bool:
    """A JACK server socket exists: cheap (no client round trip), but a crashed server's stale
    socket also counts. doctor.ask_jack_server() asks the server itself."""
    return _jack_server_socket() is not None


def check_backend(backend: str) -> None:
    """Raise UsageError with the fix when `backend` cannot work on this machine."""
    if backend not in BACKENDS:
        raise UsageError(f"--midi-backend {backend}: unknown; use one of {'/'.join(BACKENDS)}")
    if backend == "none":
        return
    import rtmidi

    compiled = [rtmidi.get_api_name(a) for a in rtmidi.get_compiled_api()]
    display = {"alsa": "alsa", "jack": "jack", "coremidi": "core", "winmm": "winmm"}[backend]
    if display not in compiled:
        raise UsageError(f"--midi-backend {backend}: this python-rtmidi build has no {backend} "
                         f"support (it has: {', '.join(compiled) or 'none'}); use one of those or none")
    if backend == "alsa" and sys.platform.startswith("linux") and not Path(ALSA_SEQ).exists():
        raise UsageError("--midi-backend alsa: /dev/snd/seq is missing (no ALSA sequencer); "
                         "load snd-seq (modprobe snd-seq) or use --midi-backend jack/none")


class MidiPorts:
    """One virtual output (always, unless backend is none) and an optional virtual input.

    `on_input(bytes_list, t)` is called from the MIDI system's thread with the arrival time
    on `clock` (perf_counter), so the caller must only queue it.
    """

    def __init__(self, backend: str, out_name: str | None, in_name: str | None,
                 on_input: Callable[[list[int], float], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.backend = backend
        self.out_name = out_name
        self.in_name = in_name
        self._on_input = on_input
        self._clock = clock
        self._out = None
        self._in = None
        self._jack_socket: Path | None = None
        self.healthy = False

    @property
    def writer(self) -> str:
        """How messages go out (the `ready` event's midi_writer): each sent as it comes, via rtmidi."""
        return "none" if self.backend == "none" else "rtmidi"

    # names as other programs see them ("client:port")
    @property
    def out_full_name(self) -> str | None:
        return f"{CLIENT_NAME}:{self.out_name}" if self._out is not None else None

    @property
    def in_full_name(self) -> str | None:
        return f"{CLIENT_NAME}:{self.in_name}" if self._in is not None else None

    def open(self) -> None:
        """Open the ports; UsageError (with the fix) when the MIDI system refuses."""
        check_backend(self.backend)
        if self.backend == "none":
            self.healthy = True
            return
        import mido

        api = RTMIDI_APIS[self.backend]
        rt = mido.Backend(f"mido.backends.rtmidi/{api}", load=True)
        try:
            if self.out_name:
                self._out = rt.open_output(self.out_name, virtual=True, client_name=CLIENT_NAME)
            if self.in_name:
                self._in = rt.open_input(self.in_name, virtual=True, client_name=CLIENT_NAME,
                                         callback=self._callback)
        except Exception as exc:  # rtmidi raises SystemError/RuntimeError subclasses
            self.close()
            text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            if self.backend == "jack" and "JACK server" in text:
                raise UsageError("--midi-backend jack: no JACK server running; start jackd "
                                 "or use --midi-backend alsa/none") from exc
            raise UsageError(f"--midi-backend {self.backend}: cannot open virtual port "
                             f"({text}); check the MIDI system or use --midi-backend none") from exc
        if self.backend == "jack":
            self._jack_socket = _jack_server_socket()
        self.healthy = True

    def _callback(self, msg) -> None:
        if self._on_input is not None:
            self._on_input(msg.bytes(), self._clock())

    def send(self, data: list[int]) -> None:
        if self._out is None or not self.healthy:
            return
        import mido

        try:
            self._out.send(mido.Message.from_bytes(data))
        except (OSError, RuntimeError, ValueError) as exc:  # a vanished port; the watchdog reopens
            self.healthy = False
            raise ConnectionError(f"MIDI send failed ({exc})") from exc

    def alive(self) -> bool:
        """Cheap check that the MIDI system is still there (JACK: the server socket)."""
        if self.backend == "none":
            return True
        if not self.healthy:
            return False
        if self.backend == "jack" and self._jack_socket is not None:
            return self._jack_socket.exists()
        if self.backend == "alsa" and sys.platform.startswith("linux"):
            return Path(ALSA_SEQ).exists()
        return True

    def close(self) -> None:
        server_gone = self.backend == "jack" and self._jack_socket is not None and not self._jack_socket.exists()
        for port in (self._in, self._out):
            if port is not None and server_gone:
                # RtMidi's JACK client segfaults when closed or freed after its server died
                # (seen in tests): leak this one reference on purpose so neither ever happens.
                ctypes.pythonapi.Py_IncRef(ctypes.py_object(port))
                continue
            if port is not None:
                try:
                    port.close()
                except (OSError, RuntimeError) as exc:  # closing a port of a dead server
                    print(f"deepdrummer-live: closing MIDI port: {exc}", file=sys.stderr)
        self._in = None
        self._out = None
        self.healthy = False
