"""The one command table: every surface (OSC, terminal, MIDI controllers, the web page) runs commands here.

A command is a name, its parameters and a handler on the session; it is added once, with
`@command(...)`, and every surface gets it: OSC as `/dd/<name>`, the terminal surface by key,
controller mappings as `action = "<name>"`, the page as a button or control.

Arguments are checked here, the way the contract says for OSC (an integral float is an int, Pd
and Max send only floats; `1.5` for an int is an error; an int is a float), before the handler
runs: a bad call changes nothing and raises `CommandError` naming the value, the range and the fix.

This module imports nothing heavy (the player process validates controller mappings with it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from deepdrummer_live.errors import CommandError
from deepdrummer_live.vocab import (
    BARS,
    DENSITY_MAX,
    DENSITY_MIN,
    INT32_MAX,
    LEARNABLE_ACTIONS,
    MAX_ROWS,
    METERS,
    MODES,
    ROWS_RANGE,
    SWING_MAX,
    SWING_MIN,
    SWITCH_POINTS,
    TEMPO_MAX,
    TEMPO_MIN,
    profile_problem,
)


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "int" | "float" | "str"
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    optional: bool = False

    def check(self, value: Any, command: str) -> Any:
        what = f"{command} {self.name}"
        if self.kind == "int":
            return _as_int(value, what, int(self.lo if self.lo is not None else -INT32_MAX),
                           int(self.hi if self.hi is not None else INT32_MAX))
        if self.kind == "float":
            return _as_float(value, what, self.lo if self.lo is not None else -math.inf,
                             self.hi if self.hi is not None else math.inf)
        if not isinstance(value, str):
            raise CommandError(f"{what} must be a string, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise CommandError(f"{what} {value!r} unknown; use one of {', '.join(self.choices)}")
        return value

    def describe(self) -> str:
        if self.choices:
            body = "|".join(self.choices)
        elif self.lo is not None and self.hi is not None:
            body = f"{int(self.lo)}-{int(self.hi)}" if self.kind == "int" else f"{self.lo:g}-{self.hi:g}"
        else:
            body = self.kind
        return f"[{self.name} {body}]" if self.optional else f"{self.name} {body}"


@dataclass(frozen=True)
class Command:
    name: str
    params: tuple[Param, ...]
    run: Callable[..., Any]  # run(session, *checked_values)
    help: str
    reply: str | None = None  # the outbound address that answers it (what `send` waits for)

    @property
    def address(self) -> str:
        return "/dd/" + self.name

    def usage(self) -> str:
        return " ".join([self.address] + [p.describe() for p in self.params])

    def check(self, args: Sequence) -> tuple:
        args = tuple(args)
        required = sum(1 for p in self.params if not p.optional)
        if not required <= len(args) <= len(self.params):
            want = str(required) if required == len(self.params) else f"{required}-{len(self.params)}"
            raise CommandError(f"{self.address} takes {want} argument(s), got {len(args)}: {list(args)!r}; "
                               f"usage: {self.usage()}")
        return tuple(p.check(v, self.address) for p, v in zip(self.params, args))


COMMANDS: dict[str, Command] = {}


def command(name: str, *params: Param, help: str, reply: str | None = None):
    """Register `fn(session, *values)` as the command `name` (OSC address /dd/<name>)."""
    seen_optional = False
    for p in params:  # optional parameters come last, or an argument list would be ambiguous
        if seen_optional and not p.optional:
            raise ValueError(f"command {name}: required parameter {p.name} after an optional one")
        seen_optional = seen_optional or p.optional

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in COMMANDS:
            raise ValueError(f"command {name!r} is registered twice")
        COMMANDS[name] = Command(name, tuple(params), fn, help, reply)
        return fn
    return register


def table() -> str:
    """Every command, one per line: usage, then what it does (`deepdrummer-live commands`)."""
    width = max(len(c.usage()) for c in COMMANDS.values())
    return "\n".join(f"{c.usage():<{width}}  {c.help}" for c in COMMANDS.values())


def lookup(name: str) -> Command:
    cmd = COMMANDS.get(name)
    if cmd is None:
        raise CommandError(f"unknown command {name!r} (/dd/{name}); see docs/protocol.md for the commands: "
                           f"{', '.join(sorted(COMMANDS))}")
    return cmd


def execute(session, name: str, args: Sequence = (), origin: Any = None) -> Any:
    """Check the arguments, then run the command on the session; blocking (a rating returns when durable).

    `origin` names who asked (an OSC sender, a web client): messages that answer this call
    (`/dd/rated`, `/dd/saved`...) reach it too, even when it is not a subscriber.
    """
    cmd = lookup(name)
    values = cmd.check(args)
    with session.origin(origin):
        return cmd.run(session, *values)


# --- numbers as OSC gives them ---------------------------------------------------------------------

def _as_int(value, what: str, lo: int, hi: int) -> int:
    """OSC 'i', also an integral float (Pd and Max send only floats); never a bool or 1.5."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CommandError(f"{what} must be an integer {lo}-{hi}, got {value!r}")
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise CommandError(f"{what} must be an integer {lo}-{hi}, got {value!r}")
        value = int(value)
    if not lo <= value <= hi:
        raise CommandError(f"{what} {value} out of range; use {lo}-{hi}")
    return value


def _as_float(value, what: str, lo: float, hi: float) -> float:
    """OSC 'f', also an int."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CommandError(f"{what} must be a number {lo:g}-{hi:g}, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and lo <= value <= hi):
        raise CommandError(f"{what} {value:g} out of range; use {lo:g}-{hi:g}")
    return value


# --- the commands ------------------------------------------------------------------------------------
# Handlers are thin: the session does the work and owns the state; here are only the names,
# the argument checks and what each surface may call.

LOOP_ID = Param("loop_id", "int", 0, INT32_MAX, optional=True)


@command("like", LOOP_ID, reply="/dd/rated", help="rate a loop (default: the current one) as liked")
def _like(session, loop_id=None):
    return session.rate(loop_id, True)


@command("dislike", LOOP_ID, reply="/dd/rated", help="rate a loop (default: the current one) as disliked")
def _dislike(session, loop_id=None):
    return session.rate(loop_id, False)


@command("next", help="skip to the next loop without rating")
def _next(session):
    return session.next()


@command("undo", reply="/dd/undone", help="take back the last rating")
def _undo(session):
    return session.undo()


@command("mode", Param("mode", "str", choices=MODES),
         help="how the next loops are chosen: explore (the paper's generate), good, bad, random")
def _mode(session, mode):
    return session.set_mode(mode)


@command("mode_cycle", help="the next mode in the order " + " -> ".join(MODES))
def _mode_cycle(session):
    current = session.mode if session.mode in MODES else MODES[-1]
    return session.set_mode(MODES[(MODES.index(current) + 1) % len(MODES)])


@command("fotf", Param("on", "int", 0, 1), help="four-on-the-floor kick off (0) or on (1)")
def _fotf(session, on):
    return session.set_fotf(bool(on))


@command("fotf_toggle", help="four-on-the-floor kick on/off")
def _fotf_toggle(session):
    return session.set_fotf(not session.fotf)


@command("tempo", Param("bpm", "float", TEMPO_MIN, TEMPO_MAX), help="internal clock tempo in BPM")
def _tempo(session, bpm):
    return session.set_tempo(bpm)


@command("tempo_nudge", Param("delta", "float", -100.0, 100.0),
         help="change the tempo by delta BPM, stopping at the limits")
def _tempo_nudge(session, delta):
    target = min(max(session.tempo + delta, TEMPO_MIN), TEMPO_MAX)
    return session.set_tempo(target)


@command("play", help="start the transport (internal clock)")
def _play(session):
    return session.play()


@command("stop", help="stop the transport (internal clock)")
def _stop(session):
    return session.stop_transport()


@command("play_toggle", help="start the transport, or stop it when playing (internal clock)")
def _play_toggle(session):
    return session.stop_transport() if session.playing else session.play()


@command("save", Param("name", "str", optional=True), reply="/dd/saved",
         help="write the current loop to the library as .mid and .wav (name: 1-64 of letters, digits, space, -, _)")
def _save(session, name=None):
    return session.save(name)


@command("status", reply="/dd/status", help="totals, current loop, mode, device, training steps")
def _status(session):
    session.emit("/dd/status", *session.status_args())


@command("ping", reply="/dd/pong", help="is the daemon there? answers /dd/pong")
def _ping(session):
    session.emit("/dd/pong")


ROW = Param("row", "int", 0, MAX_ROWS - 1)  # and within the current loop: the session checks


@command("lock", ROW, Param("on", "int", 0, 1),
         help="lock (1) or unlock (0) a row of the current loop: the loops that follow keep it, in every mode")
def _lock(session, row, on):
    return session.set_lock(row, bool(on))


@command("lock_toggle", ROW, help="lock a row of the current loop, or unlock it when locked")
def _lock_toggle(session, row):
    return session.set_lock(row, row not in session.locked)


@command("density", Param("p", "float", DENSITY_MIN, DENSITY_MAX),
         help="the generator's prior probability of a hit, for every row (the paper's is 0.5)")
def _density(session, p):
    return session.set_density(p)


@command("row_density", ROW, Param("p", "float", DENSITY_MIN, DENSITY_MAX),
         help="the generator's prior probability of a hit in one row")
def _row_density(session, row, p):
    return session.set_density(p, row)


@command("learn", Param("action", "str", choices=tuple(LEARNABLE_ACTIONS)),
         Param("row", "int", 0, MAX_ROWS - 1, optional=True),
         reply="/dd/learned", help="MIDI learn: the next pad or key pressed on the MIDI input triggers `action` "
                                   "(lock: give the row); saved to <state-dir>/controller.toml")
def _learn(session, action, row=None):
    return session.midi_learn(action, row)


@command("experiment", reply="/dd/experiment", help="the running experiment's participant, phase and progress")
def _experiment(session):
    if not hasattr(session, "experiment_args"):
        raise CommandError("no experiment is running; start one with `deepdrummer-live experiment --participant CODE`")
    session.emit("/dd/experiment", *session.experiment_args())


@command("swing", Param("amount", "float", SWING_MIN, SWING_MAX),
         help="odd 16ths late by amount x one step (0 straight, 1/3 triplet feel), in MIDI out, live audio and files")
def _swing(session, amount):
    return session.set_swing(amount)


# --- the loop's shape (contract v1.2): loops proposed from now on; the current one plays on -------------

@command("rows", Param("rows", "int", *ROWS_RANGE), help="rows per loop from the next proposal on (the paper's 4)")
def _rows(session, rows):
    return session.set_shape(rows=rows)


@command("bars", Param("bars", "int", min(BARS), max(BARS)),
         help="bars per loop (a phrase: later bars vary the first, the last may end in a fill): 1, 2 or 4")
def _bars(session, bars):
    if bars not in BARS:  # the range check above lets 3 through
        raise CommandError(f"/dd/bars bars {bars} not allowed; use one of {', '.join(map(str, BARS))}")
    return session.set_shape(bars=bars)


@command("meter", Param("meter", "str", choices=tuple(METERS)), help="the meter of the loops proposed from now on")
def _meter(session, meter):
    return session.set_shape(meter=meter)


@command("switch", Param("at", "str", choices=SWITCH_POINTS),
         help="while playing, a new loop starts at the end of the playing phrase (phrase) or at its next bar (bar)")
def _switch(session, at):
    return session.set_switch(at)

# --- the performer's set (contract v1.2): taste profiles, variations, fills, recall ---------------------

def _profile_name(value: str | None) -> str | None:
    problem = profile_problem(value) if value is not None else None
    if problem:
        raise CommandError(problem)
    return value


@command("profile", Param("name", "str", optional=True), Param("from", "str", optional=True), reply="/dd/profile",
         help="make the taste profile `name` current (1-32 of letters, digits, -, _), creating it if new: a copy "
              "of profile `from`, else untrained; no name: which profile is current")
def _profile(session, name=None, base=None):
    if name is None:
        return session.profile_reply()
    return session.set_profile(_profile_name(name), _profile_name(base))


@command("profile_select", Param("index", "int", 0, 127), reply="/dd/profile",
         help="make the index-th profile current (0-based, as `deepdrummer-live profiles` lists them)")
def _profile_select(session, index):
    return session.select_profile(index)


@command("profile_next", reply="/dd/profile", help="the next taste profile, in the order they were made")
def _profile_next(session):
    return session.next_profile()


@command("vary", help="the next loop is a variation of this one: at least half its rows keep their sample, "
                      "at most a quarter of its step cells change; the critic's best variation")
def _vary(session):
    return session.vary()


@command("fill", help="the next bar played is a fill (this loop's last beat drawn again, busier), then the loop "
                      "goes on")
def _fill(session):
    return session.fill()


@command("recall", Param("loop_id", "int", 0, INT32_MAX), help="make an earlier loop of this state dir current "
                                                              "again (at the next bar line while playing)")
def _recall(session, loop_id):
    return session.recall(loop_id)
