"""What the session plays loops through (`Playback`): the player process (player/handle.py), or bar
lines from the clock alone (`VirtualPlayback`). ("Transport" is only the music's play/stop.)

The session calls a `Playback`; events come back through the callback given to it
(`switched`, `transport`, `tempo`, `step`, `control`, `error`: see docs/architecture.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from deepdrummer_live.vocab import N_STEPS, STEPS_PER_BEAT


class Playback(Protocol):
    def set_loop(self, loop_id: int, rows: list[dict], audio, at_bar: bool, *, swing: float | None = None,
                 steps_per_bar: int = N_STEPS, switch_at: str = "phrase") -> None: ...
    def play(self) -> None: ...
    def stop(self) -> None: ...
    def set_tempo(self, tempo: float) -> None: ...
    def close(self) -> None: ...


class VirtualPlayback:
    """Bar lines from the monotonic clock, for runs with no MIDI and no audio (headless tests)."""

    def __init__(self, tempo: float, on_event: Callable[[dict], None],
                 now: Callable[[], float] = time.monotonic):
        self.now = now  # one monotonic clock; injectable so a test can set the time
        self.tempo = tempo
        self.on_event = on_event
        self.playing = False
        self.origin = 0.0  # when the playing loop started (step 0 of its phrase)
        self.loop_steps = N_STEPS  # the playing loop's steps, and its bar's
        self.bar_steps = N_STEPS
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def _step_seconds(self) -> float:
        return 60.0 / self.tempo / STEPS_PER_BEAT

    def _bar_seconds(self) -> float:
        return self.loop_steps * self._step_seconds()

    def set_loop(self, loop_id: int, rows, audio, at_bar: bool, *, swing: float | None = None,
                 steps_per_bar: int = N_STEPS, switch_at: str = "phrase") -> None:
        n_steps = len(rows[0]["steps"]) if rows else N_STEPS
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            if not (at_bar and self.playing):
                self._timer = None
                self.loop_steps, self.bar_steps = n_steps, steps_per_bar
                self.on_event({"type": "switched", "loop_id": loop_id})
                return
            # the playing loop's next phrase end (or bar line): the new loop's step 0
            unit = (self.loop_steps if switch_at == "phrase" else self.bar_steps) * self._step_seconds()
            elapsed = self.now() - self.origin
            at = self.origin + (int(elapsed // unit) + 1) * unit
            self._timer = threading.Timer(max(0.0, at - self.now()), self._switch,
                                          args=(loop_id, at, n_steps, steps_per_bar))
            self._timer.daemon = True
            self._timer.start()

    def _switch(self, loop_id: int, at: float, n_steps: int, steps_per_bar: int) -> None:
        with self._lock:
            if self.playing:
                self.origin = at
            self.loop_steps, self.bar_steps = n_steps, steps_per_bar
        self.on_event({"type": "switched", "loop_id": loop_id})

    def current_step(self) -> int:
        """The playhead (0 to the loop's steps - 1), computed from the clock: no events needed for a display."""
        with self._lock:
            if not self.playing:
                return 0
            return int((self.now() - self.origin) / self._step_seconds()) % self.loop_steps

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

    def set_tempo(self, tempo: float) -> None:
        with self._lock:
            if self.playing:  # keep the bar phase: re-anchor so the current position is unchanged
                now = self.now()
                phase = ((now - self.origin) / self._bar_seconds()) % 1.0
                self.tempo = tempo
                self.origin = now - phase * self._bar_seconds()
            else:
                self.tempo = tempo

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None
