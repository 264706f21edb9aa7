"""Who owns time: the internal clock leader, the MIDI clock follower and Ableton Link.

Each clock source is pure scheduling logic: it is given the current time (`now`, seconds on
one monotonic clock, perf_counter in the player) and incoming realtime bytes, and answers
with a list of events for the engine:

    ("send", [bytes], t)                    a MIDI message for the output port, due at t (now or
                                            a tick's time: timed ports place it there)
    ("step", step, t_step, step_seconds)    16th-note step `step` (counted from the song
                                            start, so step % 16 == 0 is a bar line) sounds at t_step
    ("transport", playing)
    ("tempo", tempo)

Times are absolute (next tick = anchor + n * interval), never accumulated sleeps, so the
rate does not drift with scheduling delays. `lead` (seconds, >= 0) asks a source to announce
steps that much before they sound, so that a negative --midi-offset-ms can send notes early.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol

from deepdrummer_live.player import midi
from deepdrummer_live.vocab import DEFAULT_TEMPO, N_STEPS, STEPS_PER_BEAT, check_tempo

TICKS_PER_QUARTER = 24
TICKS_PER_STEP = TICKS_PER_QUARTER // STEPS_PER_BEAT  # 6: a 16th note
STEPS_PER_BAR = N_STEPS
START_GUARD_S = 0.002  # Start goes out with a tick at least this far ahead, never a late one
LATENESS_KEPT = 8192  # ticks of send lateness kept for the player's stats (about 4 min at 120 BPM)


class ClockSource(Protocol):
    """What the sequencer asks of a clock source; every method answers with events (module doc)."""

    kind: str  # "internal" | "midi" | "link"
    lateness: deque[float]  # seconds late per tick sent, when this source sends the clock (else empty)

    def resync(self, now: float) -> None:
        """The player's loop starts now (startup took a while): no burst of overdue events."""

    def deadline(self) -> float | None:
        """When `advance` has something to do next; None: only incoming MIDI moves this source."""

    def advance(self, now: float) -> list: ...

    def on_midi(self, data: list[int], t: float) -> list: ...

    def play(self, now: float) -> list: ...

    def stop(self, now: float) -> list: ...

    def set_tempo(self, tempo: float, now: float) -> list: ...

    def close(self) -> None:
        """Leave whatever session the source joined."""


def tick_interval(tempo: float) -> float:
    return 60.0 / (tempo * TICKS_PER_QUARTER)


class TickGrid:
    """Tick n happens at anchor_t + (n - anchor_n) * interval; a tempo change re-anchors."""

    def __init__(self, tempo: float, t0: float):
        self.interval = tick_interval(tempo)
        self.anchor_n = 0
        self.anchor_t = t0

    def time_of(self, n: int) -> float:
        return self.anchor_t + (n - self.anchor_n) * self.interval

    def retempo(self, tempo: float, at_tick: int) -> None:
        """Keep tick `at_tick` where it was (no jump), space the following ones at the new rate."""
        self.anchor_t = self.time_of(at_tick)
        self.anchor_n = at_tick
        self.interval = tick_interval(tempo)

    def first_tick_at_or_after(self, t: float) -> int:
        return self.anchor_n + math.ceil((t - self.anchor_t) / self.interval - 1e-9)


class InternalClock:
    """The player leads: clock ticks run continuously, Start/Stop/SPP frame the song."""

    kind = "internal"

    def __init__(self, tempo: float, now: float, lead: float = 0.0):
        self.tempo = check_tempo(tempo)
        self.lead = max(0.0, lead)
        self.grid = TickGrid(self.tempo, now + START_GUARD_S)
        self.next_tick = 0
        self.playing = False
        self.start_tick: int | None = None  # tick that carries Start and is step 0
        self.next_step = 0
        self.lateness: deque[float] = deque(maxlen=LATENESS_KEPT)  # send time - due time, per tick

    def resync(self, now: float) -> None:
        """Re-anchor the idle grid at `now` (startup took a while: no burst of late ticks)."""
        if not self.playing:
            self.grid.anchor_n, self.grid.anchor_t = self.next_tick, now + START_GUARD_S

    def _step_time(self, step: int) -> float:
        return self.grid.time_of(self.start_tick + step * TICKS_PER_STEP)

    def deadline(self) -> float:
        t = self.grid.time_of(self.next_tick)
        if self.playing:
            t = min(t, self._step_time(self.next_step) - self.lead)
        return t

    def advance(self, now: float) -> list:
        events: list = []
        while True:
            t_tick = self.grid.time_of(self.next_tick)
            t_step = self._step_time(self.next_step) - self.lead if self.playing else math.inf
            if min(t_tick, t_step) > now:
                return events
            if t_step <= t_tick:  # steps first: with lead 0 the notes go with their tick
                events.append(("step", self.next_step, t_step + self.lead,
                               self.grid.interval * TICKS_PER_STEP))
                self.next_step += 1
            else:
                if self.playing and self.next_tick == self.start_tick:
                    events.append(("send", [midi.START], t_tick))
                events.append(("send", [midi.CLOCK], t_tick))
                self.lateness.append(now - t_tick)
                self.next_tick += 1

    def play(self, now: float) -> list:
        if self.playing:
            return []
        self.start_tick = max(self.next_tick,
                              self.grid.first_tick_at_or_after(now + self.lead + START_GUARD_S))
        self.next_step = 0
        self.playing = True
        # SPP is only valid while stopped, so it goes out before Start
        return [("send", midi.song_position(0), now), ("transport", True)]

    def stop(self, now: float) -> list:
        if not self.playing:
            return []
        self.playing = False
        return [("send", [midi.STOP], now), ("transport", False)]

    def set_tempo(self, tempo: float, now: float) -> list:
        self.tempo = check_tempo(tempo)
        self.grid.retempo(self.tempo, self.next_tick)
        return [("tempo", self.tempo)]

    def on_midi(self, data: list[int], t: float) -> list:
        return []  # the leader ignores incoming clock

    def close(self) -> None:
        pass  # nothing joined


class TempoEstimator:
    """BPM from incoming clock arrival times: mean interval over a sliding window."""

    def __init__(self, window: int = 48, min_intervals: int = 12, gap_s: float = 1.0):
        self.times: deque[float] = deque(maxlen=window + 1)
        self.min_intervals = min_intervals
        self.gap_s = gap_s  # longer than a tick at 20 BPM (125 ms): the clock stopped

    def reset(self) -> None:
        self.times.clear()

    def add(self, t: float) -> None:
        if self.times and t - self.times[-1] > self.gap_s:
            self.times.clear()
        self.times.append(t)

    @property
    def interval(self) -> float | None:
        n = len(self.times) - 1
        if n < self.min_intervals:
            return None
        return (self.times[-1] - self.times[0]) / n

    @property
    def tempo(self) -> float | None:
        iv = self.interval
        return None if not iv else 60.0 / (iv * TICKS_PER_QUARTER)


class MidiClockFollower:
    """Steps on incoming clock: 6 clocks per 16th; obeys Start/Stop/Continue and SPP."""

    kind = "midi"
    REPORT_EVERY = TICKS_PER_QUARTER  # tempo events at most once a beat
    REPORT_DELTA_TEMPO = 0.05

    def __init__(self, lead: float = 0.0, fallback_tempo: float = DEFAULT_TEMPO):
        self.lead = max(0.0, lead)
        self.estimator = TempoEstimator()
        self.fallback_interval = tick_interval(fallback_tempo)
        self.playing = False
        self.pulse = 0  # song position of the next clock, in clocks
        self.next_step = 0
        self.reported_tempo: float | None = None
        self._since_report = 0
        self.lateness: deque[float] = deque(maxlen=0)  # the clock is the source's, not ours

    @property
    def tempo(self) -> float | None:
        return self.estimator.tempo

    def resync(self, now: float) -> None:
        pass  # event driven: nothing is due before the next incoming clock

    def close(self) -> None:
        pass

    def deadline(self) -> float | None:
        return None  # event driven

    def advance(self, now: float) -> list:
        return []

    def _position(self, pulse: int) -> None:
        self.pulse = pulse
        self.next_step = -(-pulse // TICKS_PER_STEP)  # ceil

    def on_midi(self, data: list[int], t: float) -> list:
        status = data[0] if data else 0
        events: list = []
        if status == midi.CLOCK:
            self.estimator.add(t)
            self._since_report += 1
            tempo = self.estimator.tempo
            if tempo is not None and self._since_report >= self.REPORT_EVERY and (
                    self.reported_tempo is None or abs(tempo - self.reported_tempo) >= self.REPORT_DELTA_TEMPO):
                self.reported_tempo = tempo
                self._since_report = 0
                events.append(("tempo", round(tempo, 2)))
            if self.playing:
                events.extend(self._clock(t))
                self.pulse += 1
        elif status == midi.START:
            self._position(0)
            self.playing = True
            events.append(("transport", True))
        elif status == midi.CONTINUE:
            self._position(self.pulse)
            self.playing = True
            events.append(("transport", True))
        elif status == midi.STOP:
            if self.playing:
                self.playing = False
                events.append(("transport", False))
        elif status == midi.SONG_POSITION and len(data) >= 3:
            self._position(midi.parse_song_position(data) * TICKS_PER_STEP)
        return events

    def _clock(self, t: float) -> list:
        interval = self.estimator.interval or self.fallback_interval
        events = []
        # Announce a step now if it is due before the next clock is expected (only with lead).
        while True:
            boundary = self.next_step * TICKS_PER_STEP
            ahead = (boundary - self.pulse) * interval
            if boundary == self.pulse or ahead - self.lead < interval and self.lead > 0:
                events.append(("step", self.next_step, t + ahead, interval * TICKS_PER_STEP))
                self.next_step += 1
            else:
                return events

    def play(self, now: float) -> list:
        raise ValueError("play: the transport follows the incoming MIDI clock (--clock midi); "
                         "start it from the clock source")

    stop = play

    def set_tempo(self, tempo: float, now: float) -> list:
        raise ValueError(f"tempo {tempo:g}: the tempo follows the incoming MIDI clock; "
                         "change it at the clock source")


class LinkClock:
    """An Ableton Link peer: shares tempo and start/stop, starts on the next bar line.

    `link` is an aalink.Link (or a test double with beat, tempo, playing, quantum,
    num_peers, enabled, start_stop_sync_enabled). Its `beat` is read at `now`.
    """

    kind = "link"
    QUANTUM = 4.0  # beats per bar
    POLL_S = 0.01  # how often peers' tempo and transport changes are noticed

    def __init__(self, link, tempo: float, now: float, lead: float = 0.0):
        self.link = link
        self.lead = max(0.0, lead)
        link.quantum = self.QUANTUM
        link.start_stop_sync_enabled = True
        link.enabled = True
        if not link.num_peers:  # joining a session must not impose our tempo on it
            link.tempo = check_tempo(tempo)
        self.playing = False
        self.origin = 0.0  # beat of step 0
        self.next_step = 0
        self.reported_tempo: float | None = None
        self._deadline = now
        self.lateness: deque[float] = deque(maxlen=0)  # Link sends no MIDI clock

    @property
    def tempo(self) -> float:
        return float(self.link.tempo)

    def resync(self, now: float) -> None:
        self._deadline = now  # steps are placed from the session's beat at `now`: nothing to re-anchor

    def deadline(self) -> float:
        return self._deadline

    def advance(self, now: float) -> list:
        events: list = []
        tempo = float(self.link.tempo)
        if self.reported_tempo is None or abs(tempo - self.reported_tempo) >= 0.01:
            self.reported_tempo = tempo
            events.append(("tempo", round(tempo, 2)))
        beat = float(self.link.beat)
        playing = bool(self.link.playing)
        if playing != self.playing:
            self.playing = playing
            events.append(("transport", playing))
            if playing:  # quantize the start to the session's next bar line
                self.origin = math.ceil(beat / self.QUANTUM - 1e-9) * self.QUANTUM
                self.next_step = 0
        spb = 60.0 / tempo
        self._deadline = now + self.POLL_S
        if self.playing:
            while True:
                t_step = now + (self.origin + self.next_step / STEPS_PER_BEAT - beat) * spb
                if t_step - self.lead > now:
                    self._deadline = min(self._deadline, t_step - self.lead)
                    break
                if t_step < now - spb / STEPS_PER_BEAT:  # the session jumped ahead: resync, don't burst
                    self.next_step = math.ceil((beat - self.origin) * STEPS_PER_BEAT - 1e-9)
                    continue
                events.append(("step", self.next_step, t_step, spb / STEPS_PER_BEAT))
                self.next_step += 1
        return events

    def play(self, now: float) -> list:
        self.link.playing = True
        return []  # the transport event comes from advance(), as for a peer's start

    def stop(self, now: float) -> list:
        self.link.playing = False
        return []

    def set_tempo(self, tempo: float, now: float) -> list:
        self.link.tempo = check_tempo(tempo)
        return []

    def on_midi(self, data: list[int], t: float) -> list:
        return []

    def close(self) -> None:
        self.link.enabled = False
