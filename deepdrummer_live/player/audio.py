"""Live audio of the current loop with pyo: one already-mixed bar, restarted at every bar line.

The engine renders each loop as one bar of mono float32 (render.py's single mix), so what plays
here is exactly the critic's input and the exported .wav. The clock owns time: `bar_line()` is
called by the player's clock thread at each bar line and only fires a trigger.

Playback objects (`_BarPlayer`): two voices `Trig -> Count -> TableIndex`, used in turn. A voice
reads its table by an integer sample counter, so playback is sample exact (no phase-increment
rounding). Each bar lives in its own table `[zeros, bar..., 0]` (double buffering: a queued bar
never overwrites the playing one); TableIndex clamps the counter to the table, so a voice that
has run past its bar outputs silence. At a bar line the idle voice (silent since the previous bar
line) gets the current table and a trigger; the other voice may still finish the last samples of
its bar when the clock is early, so bars never cut each other. `bar_line()` is one table
assignment and one `Trig.play()`: pyo computes each block holding the GIL, so the audio thread
cannot run between the two (bar_line is far shorter than Python's 5 ms switch interval).

pyo quirks handled here:
- `import pyo` prints a WxPython banner to stdout unless PYO_GUI_WX=0: set before importing.
- The pyo Server fades its master gain in over 5 ms after start (and ends at ~0.9999992, a float
  accumulation). Offline renders therefore start the first bar after OFFLINE_LEAD_IN samples of
  silence; the bars follow back to back from there, sample exact.
- A failed JACK boot does not raise: `getIsBooted()` is checked. pyo opens its JACK client with
  JackNullOption, so the server is chosen by $JACK_DEFAULT_SERVER and libjack would spawn a jackd
  if none runs; we set JACK_NO_START_SERVER=1 (unless the user set it) so a missing server is an
  error, not a stray jackd. pyo's own "system" autoconnect dereferences NULL when there are no
  system ports, so it is disabled and explicit port names (checked by pyo) are used instead.
- Booting portaudio with no output device segfaults inside pyo: the device count is checked first.
- pyo objects attach to the process's current Server: `render_offline` must not run in a process
  where a live LoopAudio server is running (the player process owns exactly one LoopAudio).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from pathlib import Path

import numpy as np

from deepdrummer_live.errors import AudioLost, UsageError
from deepdrummer_live.vocab import AUDIO_BACKENDS

BACKENDS = AUDIO_BACKENDS
N_VOICES = 2
OFFLINE_LEAD_IN = 1024  # samples of silence before bar 0 in offline files (> pyo's 5 ms fade-in up to 192 kHz)
OFFLINE_BLOCK = 64  # offline buffer size; bar starts inside a block are placed by the Count offset
OFFLINE_TAIL = OFFLINE_BLOCK  # silence after the last bar, so pyo's block rounding never cuts it
_RETIRED_TABLES = 8  # see _BarPlayer._retired
# Index of a bar's first sample in its table: the zeros before it let a voice start up to this many samples
# before its bar line, so on JACK a bar begins at its frame inside a block (player/sequencer.py triggers
# it up to two periods early with that delay); offline blocks use the first OFFLINE_BLOCK of them.
_LEAD = 8192
MAX_BAR_DELAY = _LEAD
_JACK_PORTS = ("system:playback_1", "system:playback_2")


def _pyo():
    """Import pyo lazily (it is slow and `--audio none` never needs it), without its stdout banner."""
    os.environ.setdefault("PYO_GUI_WX", "0")
    import pyo

    return pyo


def _as_bar(audio, sr: int) -> np.ndarray:
    """Validate one bar of mono audio; returns float32 1-D."""
    bar = np.asarray(audio, dtype=np.float32)
    if bar.ndim != 1 or bar.size == 0:
        raise ValueError(f"a bar must be non-empty 1-D mono audio at {sr} Hz, got shape {bar.shape}; "
                         "pass render.render_bars(...)[i] as a float32 numpy array")
    if not np.all(np.isfinite(bar)):
        raise ValueError("a bar contains NaN or inf samples; render it again (render.mix clips to [-1, 1])")
    return bar


class _BarPlayer:
    """The playback objects shared by the live server and offline rendering (see module doc)."""

    def __init__(self, pyo):
        self._pyo = pyo
        self._silent = pyo.DataTable(2)  # zeros: what a stopped voice reads
        # Trig fires once when created: that starts each Count (an unstarted Count outputs garbage).
        self._trigs = [pyo.Trig() for _ in range(N_VOICES)]
        self._counts = [pyo.Count(t, min=_LEAD) for t in self._trigs]
        self._voices = [pyo.TableIndex(self._silent, c) for c in self._counts]
        self.out = pyo.Mix(self._voices, voices=1)
        # pyo 1.1 crashes if a table is freed right after a voice lets go of it (the audio thread
        # still reads it until its next block): replaced tables stay alive a few swaps longer.
        self._retired: deque = deque(maxlen=_RETIRED_TABLES)
        self._k = 0  # voice that plays the current bar
        self._current = None  # table of the current bar (repeats until a queued one replaces it)
        self._queued = None

    def make_table(self, bar: np.ndarray):
        """A table `[_LEAD zeros, bar..., 0]`, filled in place through pyo's buffer protocol."""
        table = self._pyo.DataTable(_LEAD + bar.size + 1)
        buf = np.asarray(table.getBuffer())
        buf[:] = 0.0
        buf[_LEAD:_LEAD + bar.size] = bar
        return table

    def queue(self, table) -> None:
        self._queued = table

    def bar_line(self, offset: int | None = None) -> None:
        """Start the current bar on the idle voice; the other voice may still finish its last
        samples (clock early) and is left alone. `offset`: samples from the start of the next block
        to the bar line, 0 <= offset < _LEAD (offline: < OFFLINE_BLOCK; live on JACK: up to two periods)."""
        if self._queued is not None:
            self._current, self._queued = self._queued, None
        if self._current is None:
            return
        nxt = (self._k + 1) % N_VOICES
        if offset is not None:
            self._counts[nxt].min = _LEAD - offset  # counts through leading zeros up to the bar line
        # idle since the previous bar line, so swapping its table is silent
        self._set_table(nxt, self._current)
        self._trigs[nxt].play()
        self._k = nxt

    def stop(self) -> None:
        """Silence now; the next bar_line restarts the current bar."""
        for i in range(N_VOICES):
            self._set_table(i, self._silent)

    def _set_table(self, i: int, table) -> None:
        voice = self._voices[i]
        if voice.table is not table:
            self._retired.append(voice.table)
            voice.table = table


class LoopAudio:
    """Plays the current loop's bar in time with the clock (see module doc).

    backend 'offline' opens no device: the bars played at each bar_line are kept (repeats share
    one array) and written to `out_path` by `render_offline` at close(); stopped time is not in it.
    """

    def __init__(self, backend: str, sr: int = 48000, out_path: Path | None = None,
                 jack_client_name: str = "DeepDrummer"):
        if backend not in BACKENDS:
            raise UsageError(f"audio backend {backend!r} is unknown; use one of {', '.join(BACKENDS)}")
        if backend == "offline" and out_path is None:
            raise UsageError("audio backend 'offline' needs a file to write; pass out_path")
        if not (8000 <= int(sr) <= 192000):
            raise UsageError(f"audio sample rate {sr} is out of range; use 8000-192000 Hz (e.g. 48000)")
        self.backend = backend
        self.sr = int(sr)
        self.out_path = Path(out_path) if out_path is not None else None
        self.jack_client_name = jack_client_name
        self._lock = threading.Lock()  # queue_bar (command thread) vs bar_line (clock thread)
        self._server = None
        self._player: _BarPlayer | None = None
        self._outs: list = []
        self._played: list[np.ndarray] = []  # offline backend only
        self._queued_bar: np.ndarray | None = None
        self._current_bar: np.ndarray | None = None
        self._started = False
        self._closed = False
        self.description: str | None = None  # what opened, for the player's `ready` event

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._closed:
            raise RuntimeError("LoopAudio was closed; create a new one")
        if self._started:
            return
        if self.backend == "offline":
            self._started = True
            self.description = f"offline -> {self.out_path} at {self.sr} Hz"
            return
        pyo = _pyo()
        if self.backend == "portaudio" and pyo.pa_get_default_output() < 0:
            raise UsageError("audio backend 'portaudio': no audio output device found; "
                             "connect one, or use --audio-backend jack|offline or --audio none")
        if self.backend == "jack":
            os.environ.setdefault("JACK_NO_START_SERVER", "1")  # fail instead of spawning a jackd
        server = pyo.Server(sr=self.sr, nchnls=2, duplex=0, audio=self.backend,
                            jackname=self.jack_client_name, verbosity=0)
        server.deactivateMidi()  # MIDI is midi.py's job; pyo's portmidi scan only adds noise
        if self.backend == "jack":
            server.setJackAuto(False, False)
            server.setJackAutoConnectOutputPorts([[p] for p in _JACK_PORTS])
        server.boot()
        if not server.getIsBooted():
            server.shutdown()
            if self.backend == "jack":
                name = os.environ.get("JACK_DEFAULT_SERVER", "default")
                raise UsageError(f"audio backend 'jack': cannot connect to JACK server {name!r}; "
                                 "start jackd (or set JACK_DEFAULT_SERVER), or use --audio-backend "
                                 "portaudio|offline or --audio none")
            raise UsageError("audio backend 'portaudio': the output device did not open; "
                             "check it is free, or use --audio-backend jack|offline or --audio none")
        actual = int(server.getSamplingRate())
        if actual != self.sr:
            server.shutdown()
            raise UsageError(f"audio backend {self.backend!r} runs at {actual} Hz but bars are rendered "
                             f"at {self.sr} Hz; restart the audio server at {self.sr} Hz "
                             f"(jackd -r {self.sr}) or render at {actual} Hz")
        self._server = server
        self._player = _BarPlayer(pyo)
        # the bar is mono: the same signal on both output channels
        self._outs = [pyo.Sig(self._player.out).out(ch) for ch in (0, 1)]
        server.start()
        self._started = True
        if self.backend == "jack":
            self.description = (f"jack client {self.jack_client_name!r} on server "
                                f"{os.environ.get('JACK_DEFAULT_SERVER', 'default')!r} at {actual} Hz")
        else:
            self.description = f"portaudio device {pyo.pa_get_default_output()} at {actual} Hz"

    def close(self) -> None:
        """Stop and shut the server down (offline: write the file). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.stop()
            self._outs, self._player = [], None
            self._server.shutdown()
            self._server = None
        elif self.backend == "offline" and self._started and self._played:
            played, self._played = self._played, []
            render_offline(played, self.sr, self.out_path)

    # -- transport (clock thread) ------------------------------------------------------------

    def queue_bar(self, audio: np.ndarray) -> None:
        """Next loop's bar; it starts at the next bar_line(). A second call before then replaces it."""
        self._require_started()
        bar = _as_bar(audio, self.sr)
        if self._player is None:
            with self._lock:
                self._queued_bar = bar
            return
        table = self._player.make_table(bar)  # allocation and copy outside the lock
        with self._lock:
            self._player.queue(table)

    def bar_line(self, delay: int | None = None) -> None:
        """(Re)start the current or queued bar from its first sample; `delay`: that many samples into the
        next block (0 <= delay < MAX_BAR_DELAY), so the bar begins at a frame, not at a block's start."""
        self._require_started()
        with self._lock:
            if self._player is not None:
                self._player.bar_line(None if delay is None else min(max(0, int(delay)), MAX_BAR_DELAY - 1))
                return
            if self._queued_bar is not None:
                self._current_bar, self._queued_bar = self._queued_bar, None
            if self._current_bar is not None:
                self._played.append(self._current_bar)

    def stop_transport(self) -> None:
        """Silence now (a hard cut); the next bar_line() restarts the current bar."""
        self._require_started()
        with self._lock:
            if self._player is not None:
                self._player.stop()

    def _require_started(self) -> None:
        if self._closed or not self._started:
            raise RuntimeError("LoopAudio is not running; call start() first (and not after close())")
        # JACK shutting down (or kicking the client) makes pyo shut its server down by itself
        if self._server is not None and not self._server.getIsBooted():
            raise AudioLost(f"audio backend {self.backend!r} went away ({self.description}); "
                            "restart the audio server and the daemon, or use --audio none")

    @property
    def alive(self) -> bool:
        """False once the audio server went away under us (JACK stopped); see AudioLost."""
        return self._started and not self._closed and (self._server is None or bool(self._server.getIsBooted()))


def render_offline(bars: list[np.ndarray], sr: int, path: Path) -> Path:
    """Play `bars` back to back through the live playback objects with pyo's offline server.

    The file is mono 32-bit float WAV: OFFLINE_LEAD_IN samples of silence, then the bars sample
    for sample (times pyo's master gain, 1 - 8e-7), then at least OFFLINE_TAIL samples of silence.
    """
    if not bars:
        raise ValueError("render_offline needs at least one bar; got an empty list")
    arrays = [_as_bar(b, sr) for b in bars]
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: folder {path.parent} does not exist; create it first")
    starts = OFFLINE_LEAD_IN + np.concatenate([[0], np.cumsum([a.size for a in arrays])])
    total = int(starts[-1]) + OFFLINE_TAIL
    pyo = _pyo()
    server = pyo.Server(sr=sr, nchnls=1, buffersize=OFFLINE_BLOCK, duplex=0, audio="offline", verbosity=0)
    server.deactivateMidi()
    server.boot()
    try:
        server.recordOptions(dur=total / sr, filename=str(path), fileformat=0, sampletype=3)
        player = _BarPlayer(pyo)
        out = player.out.out()
        tables: dict[int, object] = {}  # one table per distinct array: a repeated loop is stored once
        for a in arrays:
            if id(a) not in tables:
                tables[id(a)] = player.make_table(a)
        state = {"block": 0, "bar": 0, "player": player, "out": out}
        del out, player  # only `state` holds them, so clearing it frees them before shutdown

        def on_block():
            # pyo calls this before computing each block: fire the bars that start inside it
            begin = state["block"] * OFFLINE_BLOCK
            state["block"] += 1
            j = state["bar"]
            while j < len(arrays) and starts[j] < begin + OFFLINE_BLOCK:
                state["player"].queue(tables[id(arrays[j])])
                state["player"].bar_line(offset=int(starts[j]) - begin)
                j += 1
            state["bar"] = j

        server.setCallback(on_block)
        server.start()  # blocks until `dur` is rendered
        state.clear()
    finally:
        server.shutdown()
    if not path.is_file():
        raise RuntimeError(f"pyo's offline server wrote no file at {path}; check the folder is writable")
    return path


def offline_bar_starts(bars: list[np.ndarray]) -> list[int]:
    """Sample index of each bar's first sample in a file from `render_offline` (fixed layout)."""
    return [OFFLINE_LEAD_IN + int(s) for s in np.concatenate([[0], np.cumsum([len(b) for b in bars])])[:-1]]


__all__ = ["AudioLost", "BACKENDS", "LoopAudio", "OFFLINE_LEAD_IN", "offline_bar_starts", "render_offline"]
