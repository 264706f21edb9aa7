"""The player process's boundary, in one place: its configuration and every message across the pipes.

Commands go from the session (`PlayerHandle`) to the player process (`Sequencer.handle_command`);
events come back (`Session.on_player_event`, the CLI's forwarder). On the wire each message is a
plain dict with a `type` (picklable, cheap, and what the unit tests feed the engine); the TypedDicts
below spell out each one's fields, and the small constructors build them, so a field is named once.
This module imports nothing heavy: the session, `send` and the player process all read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

from deepdrummer_live.errors import UsageError
from deepdrummer_live.player import midi
from deepdrummer_live.sound.dynamics import LEVEL_CHARS, default_levels, velocity
from deepdrummer_live.vocab import (
    AUDIO_MODES,
    DEFAULT_TEMPO,
    check_clock,
    check_midi_offset,
    check_tempo,
    swing_problem,
)

MIDI_WRITERS = ("jack-frames", "rtmidi", "none")  # what the `ready` event's midi_writer can say


# ---- configuration -----------------------------------------------------------------------------

@dataclass
class PlayerConfig:
    midi_backend: str = field(default_factory=lambda: midi.default_backend() or "none")
    midi_out: str | None = "DeepDrummer"
    midi_in: str | None = None
    clock: str = "internal"
    tempo: float = DEFAULT_TEMPO
    midi_offset_ms: float = 0.0
    controller: str | None = None  # a built-in mapping name (paths.controllers_dir()) or a .toml path
    learned: Path | None = None  # MIDI-learned bindings (player/midilearn.py), laid over `controller`
    audio: str = "pyo"
    audio_backend: str = "portaudio"
    audio_sr: int = 48000
    audio_out_path: Path | None = None  # offline rendering target for audio_backend "offline"
    audio_required: bool = False  # asked for with a flag: no audio ends `run` (exit 2) instead of a warning
    stderr_path: Path | None = None  # libjack/ALSA/pyo print to fd 2: keep that in the daemon's log
    realtime: bool = True  # try SCHED_FIFO (then nice) for the engine thread; off = plain
    # --midi-backend jack: write each event at its frame in JACK's cycle (player/jackmidi.py) where the
    # JACK-Client package and libjack load; False keeps python-rtmidi's JACK ports (frame 0 of a period)
    jack_frames: bool = True

    def validate(self) -> None:
        """UsageError naming the bad value and the fix; called before anything opens."""
        if self.midi_backend not in midi.BACKENDS:
            raise UsageError(f"MIDI backend {self.midi_backend!r} unknown; use one of {'/'.join(midi.BACKENDS)}")
        try:
            check_clock(self.clock)
            check_tempo(self.tempo)
            check_midi_offset(self.midi_offset_ms)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if self.audio not in AUDIO_MODES:
            raise UsageError(f"audio {self.audio!r} unknown; use one of {'/'.join(AUDIO_MODES)}")
        if self.clock == "midi" and (self.midi_backend == "none" or not self.midi_in):
            raise UsageError("the MIDI clock needs an input port to receive the clock on; give the player a "
                             "MIDI input and a MIDI backend other than none")


# ---- loop rows ---------------------------------------------------------------------------------

class Row(TypedDict, total=False):
    """One row of a loop: its note and one character per step (any number of steps, same in every row)."""

    note: int
    steps: str  # "x" hit, "." rest
    levels: str  # "1"-"9" under each "x", "." under each rest; absent: every hit at DEFAULT_LEVEL


ParsedRow = tuple[int, str, tuple[int, ...]]  # (note, steps, velocity per step, 0 on rests)


def parse_rows(rows) -> list[ParsedRow]:
    """Player rows `{note, steps, levels?}` -> (note, steps, velocity per step, 0 on rests).

    Any number of rows and of steps (a bar of 12, 16 or 20 steps, a loop of several bars); every
    row has the same number of steps. A row without `levels` plays every hit at DEFAULT_LEVEL.
    """
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"set_loop rows {rows!r}: need a non-empty list of {{note, steps, levels}}")
    out = []
    n_steps = None
    for i, row in enumerate(rows):
        note, steps = row.get("note"), row.get("steps")
        if not (isinstance(note, int) and 0 <= note <= 127):
            raise ValueError(f"set_loop row {i}: note {note!r} out of range 0..127")
        if not (isinstance(steps, str) and steps and set(steps) <= {"x", "."}):
            raise ValueError(f"set_loop row {i}: steps {steps!r} must be 'x'/'.' characters")
        if n_steps is not None and len(steps) != n_steps:
            raise ValueError(f"set_loop row {i}: {len(steps)} steps, other rows have {n_steps}")
        n_steps = len(steps)
        levels = row.get("levels")
        if levels is None:
            levels = default_levels([steps])[0]
        if not (isinstance(levels, str) and len(levels) == n_steps
                and all((c == ".") if s == "." else (c in LEVEL_CHARS) for s, c in zip(steps, levels))):
            raise ValueError(f"set_loop row {i}: levels {levels!r} must have '1'-'9' where steps {steps!r} "
                             f"has 'x' and '.' where it has '.'")
        out.append((note, steps, tuple(0 if c == "." else velocity(int(c)) for c in levels)))
    return out


def check_swing(amount) -> float:
    """A swing amount 0.0-0.5 as a float, else ValueError naming it and the range."""
    problem = swing_problem(amount)
    if problem:
        raise ValueError(problem)
    return float(amount)


# ---- commands: session -> player ---------------------------------------------------------------

class SetLoop(TypedDict):
    type: Literal["set_loop"]
    loop_id: int | None
    rows: list[Row]
    audio: Any  # np.float32[samples] (the whole loop at audio_sr, current tempo and swing, mixed) or None
    at_bar: bool  # while playing: wait for the playing loop's phrase end (or bar line: switch_at)
    swing: float | None  # odd steps late by swing x one step; None keeps the current swing
    steps_per_bar: int  # a bar of the loop's meter (16ths): rows' steps are whole bars of it
    switch_at: str  # "phrase": the playing loop's end; "bar": its next bar line


class Play(TypedDict):
    type: Literal["play"]


class Stop(TypedDict):
    type: Literal["stop"]


class Tempo(TypedDict):
    type: Literal["tempo"]
    bpm: float


class Stats(TypedDict):
    type: Literal["stats"]


class Learn(TypedDict):
    type: Literal["learn"]
    on: bool


class Bind(TypedDict):
    type: Literal["bind"]
    kind: Literal["note", "cc"]
    number: int
    channel: int | None  # 0-based; None: any channel
    action: str
    value: Any


class Shutdown(TypedDict):
    type: Literal["shutdown"]


Command = SetLoop | Play | Stop | Tempo | Stats | Learn | Bind | Shutdown
COMMANDS = ("set_loop", "play", "stop", "tempo", "stats", "learn", "bind", "shutdown")


def set_loop(loop_id: int | None, rows: list[Row], audio=None, at_bar: bool = True, *,
             swing: float | None = None, steps_per_bar: int = 16, switch_at: str = "phrase") -> SetLoop:
    return {"type": "set_loop", "loop_id": loop_id, "rows": rows, "audio": audio, "at_bar": at_bar, "swing": swing,
            "steps_per_bar": steps_per_bar, "switch_at": switch_at}


def play() -> Play:
    return {"type": "play"}


def stop() -> Stop:
    return {"type": "stop"}


def tempo(value: float) -> Tempo:
    return {"type": "tempo", "bpm": float(value)}


def stats() -> Stats:
    return {"type": "stats"}


def learn(on: bool = True) -> Learn:
    return {"type": "learn", "on": bool(on)}


def bind(kind: str, number: int, channel: int | None, action: str, value) -> Bind:
    return {"type": "bind", "kind": kind, "number": number, "channel": channel, "action": action,  # type: ignore
            "value": value}


def shutdown() -> Shutdown:
    return {"type": "shutdown"}


# ---- events: player -> session -----------------------------------------------------------------

class Ready(TypedDict):
    type: Literal["ready"]
    midi_out: str | None  # what actually opened ("client:port")
    midi_in: str | None
    audio: str | None
    priority: str | None  # the engine thread's: "fifo", "nice" or None
    midi_writer: str  # MIDI_WRITERS: "jack-frames" (each event at its frame), "rtmidi", "none"


class Fatal(TypedDict):
    type: Literal["fatal"]
    message: str  # startup failed: port busy, no MIDI system...


class Switched(TypedDict):
    type: Literal["switched"]
    loop_id: int | None  # a loop became the one playing, at a bar line


class Transport(TypedDict):
    type: Literal["transport"]
    playing: bool


class TempoChanged(TypedDict):
    type: Literal["tempo"]
    bpm: float  # set, or estimated from MIDI clock or Link


class Step(TypedDict):
    type: Literal["step"]
    step: int  # playhead within the bar


class Control(TypedDict):
    type: Literal["control"]
    command: str  # a command of the table, from a MIDI controller mapping
    args: list


class Error(TypedDict):
    type: Literal["error"]
    message: str  # a fault the player survived
    address: str  # the part that failed, as /dd/error names it: "/dd/midi" or "/dd/audio"


class Ports(TypedDict):
    type: Literal["ports"]
    midi_out: str | None  # reopened after the MIDI system came back
    midi_in: str | None


class LearnArmed(TypedDict):
    type: Literal["learn_armed"]
    on: bool


class LearnMidi(TypedDict):
    type: Literal["learn_midi"]
    data: list[int]  # [status, number, value] of the press while learning


class LearnBound(TypedDict):
    type: Literal["learn_bound"]
    kind: str
    number: int
    channel: int | None


class StatsReport(TypedDict, total=False):
    type: Literal["stats"]
    midi_ignored: int
    ticks: int
    tick_late_ms_p50: float  # how late clock ticks left the engine (send side), when it leads
    tick_late_ms_p99: float
    tick_late_ms_max: float


Event = (Ready | Fatal | Switched | Transport | TempoChanged | Step | Control | Error | Ports | LearnArmed
         | LearnMidi | LearnBound | StatsReport)


def fatal(message: str) -> Fatal:
    return {"type": "fatal", "message": message}


def switched(loop_id: int | None) -> Switched:
    return {"type": "switched", "loop_id": loop_id}


def transport(playing: bool) -> Transport:
    return {"type": "transport", "playing": bool(playing)}


def tempo_changed(value: float) -> TempoChanged:
    return {"type": "tempo", "bpm": value}


def step(n: int) -> Step:
    return {"type": "step", "step": n}


def control(command: str, args: list) -> Control:
    return {"type": "control", "command": command, "args": args}


def error(message: str, address: str) -> Error:
    return {"type": "error", "message": message, "address": address}


def ports(midi_out: str | None, midi_in: str | None) -> Ports:
    return {"type": "ports", "midi_out": midi_out, "midi_in": midi_in}


def learn_armed(on: bool) -> LearnArmed:
    return {"type": "learn_armed", "on": on}


def learn_midi(data: list[int]) -> LearnMidi:
    return {"type": "learn_midi", "data": data}


def learn_bound(kind: str, number: int, channel: int | None) -> LearnBound:
    return {"type": "learn_bound", "kind": kind, "number": number, "channel": channel}
