"""What the session plays loops through: the player process, or bar lines from the clock alone.

The session calls a `Transport`; events come back through the callback given to it
(`switched`, `transport`, `tempo`, `step`, `control`, `error`: see docs/architecture.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from deepdrummer_live.vocab import N_STEPS, STEPS_PER_BEAT


class Transport(Protocol):
    def set_loop(self, loop_id: int, rows: list[dict], audio, at_bar: bool, swing: float | None = None) -> None: ...
    def play(self) -> None: ...
    def stop(self) -> None: ...
    def set_tempo(self, bpm: float) -> None: ...
    def close(self) -> None: ...


class VirtualTransport:
    """Bar lines from the monotonic clock, for runs with no MIDI and no audio (headless tests)."""

    def __init__(self, tempo: float, on_event: Callable[[dict], None],
                 now: Callable[[], float] = time.monotonic):
        self.now = now  # one monotonic clock; injectable so a test can set the time
        self.tempo = tempo
        self.on_event = on_event
        self.playing = False
        self.origin = 0.0
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def _bar_seconds(self) -> float:
        return N_STEPS / STEPS_PER_BEAT * 60.0 / self.tempo

    def set_loop(self, loop_id: int, rows, audio, at_bar: bool, swing: float | None = None) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            if not (at_bar and self.playing):
                self._timer = None
                self.on_event({"type": "switched", "loop_id": loop_id})
                return
            bar = self._bar_seconds()
            elapsed = self.now() - self.origin
            next_bar = self.origin + (int(elapsed // bar) + 1) * bar
            self._timer = threading.Timer(max(0.0, next_bar - self.now()),
                                          self.on_event, args=({"type": "switched", "loop_id": loop_id},))
            self._timer.daemon = True
            self._timer.start()

    def current_step(self) -> int:
        """The playhead (0-15), computed from the clock: no events needed for a display."""
        with self._lock:
            if not self.playing:
                return 0
            return int((self.now() - self.origin) / (self._bar_seconds() / N_STEPS)) % N_STEPS

    def play(self) -> None:
        with self._lock:
            if not self.playing:
                self.playing = True
                self.origin = self.now()
        self.on_event({"type": "transport", "playing": True})

    def stop(self) -> None:
        with self._lock:
            self.playing = False
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            timer.function(*timer.args)  # a switch waiting for a bar line happens now
        self.on_event({"type": "transport", "playing": False})

    def set_tempo(self, bpm: float) -> None:
        with self._lock:
            if self.playing:  # keep the bar phase: re-anchor so the current position is unchanged
                now = self.now()
                phase = ((now - self.origin) / self._bar_seconds()) % 1.0
                self.tempo = bpm
                self.origin = now - phase * self._bar_seconds()
            else:
                self.tempo = bpm

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None
