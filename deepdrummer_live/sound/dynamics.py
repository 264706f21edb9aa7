"""Dynamics as text: a hit's level 1-9 (ghost to accent), its `/dd/levels` string and MIDI velocity.

Plain Python (no torch), so the store, the CLI's `send` and exporters can use it cheaply.
A row's `levels` string has one character per step: '.' for a rest (exactly where its `steps`
string has '.'), '1'-'9' for a hit's level.
"""

from __future__ import annotations

MAX_LEVEL = 9
DEFAULT_LEVEL = 7  # a hit with no level of its own (the paper's grid, older stored loops): velocity 99
REST = "."
LEVEL_CHARS = "123456789"


def velocity(level: int) -> int:
    """The MIDI note-on velocity of a hit at `level` (contract v1.1): round(127 x level / 9)."""
    return int(round(127 * level / MAX_LEVEL))


def default_levels(steps: list[str]) -> list[str]:
    """Level strings for 'x'/'.' `steps` with no levels of their own: every hit at DEFAULT_LEVEL."""
    return ["".join(str(DEFAULT_LEVEL) if c == "x" else REST for c in row) for row in steps]


def steps_of(levels: list[str]) -> list[str]:
    """The 'x'/'.' `steps` strings of level strings."""
    return ["".join(REST if c == REST else "x" for c in row) for row in levels]


def parse_level(c: str) -> int:
    """One character of a levels string -> 0 (rest) or 1-9; an 'x' (a hit with no level) is
    DEFAULT_LEVEL. Anything else is a ValueError naming it."""
    if c == REST:
        return 0
    if c == "x":
        return DEFAULT_LEVEL
    if c in LEVEL_CHARS:
        return int(c)
    raise ValueError(f"level {c!r}: use '.' for a rest or 1-9 for a hit")


def check_levels(steps: list[str], levels: list[str]) -> None:
    """ValueError unless `levels` has a '.' exactly where `steps` has one, and 1-9 elsewhere."""
    if len(steps) != len(levels) or any(len(a) != len(b) for a, b in zip(steps, levels)):
        raise ValueError(f"levels {levels!r} do not have the shape of steps {steps!r}")
    for s_row, l_row in zip(steps, levels):
        for s, v in zip(s_row, l_row):
            if (s == REST) != (v == REST) or (v != REST and v not in LEVEL_CHARS):
                raise ValueError(f"levels {l_row!r} do not match steps {s_row!r}: '.' where it rests, "
                                 f"1-9 where it hits")
