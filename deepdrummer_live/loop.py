"""One loop, as one record, and the one codec for its text forms.

A loop is rows (each: the kit sample it plays, that sample's role, the MIDI note it goes out on, its
`steps` string and its `levels` string), a tempo, a swing and its shape (a meter; its bars follow from
the steps). The store, the library, the dataset, the report, the session and the simulated users all
hold a `LoopRecord`, the player's messages carry its `player_rows()`, the public client can make one of what
it heard; the tensors of the generator and the critic are `sound/pattern.Loops` (`Learner.record` and
`Learner.loops_from_record` go between the two).

The text forms, each read and written here only:
- OSC (contract v1.0-v1.2): `/dd/loop` (i id, f p_like, f bpm, i n_steps, then s sample, i note, s steps
  per row), `/dd/levels` (i id, then s levels per row), `/dd/shape` (i id, i steps_per_bar, i bars, s meter);
- the store's `loops` columns (the per-row lists as JSON, steps and levels joined by `|`; the steps in
  the column `grid`, its name since the first state dirs; levels and meter may be NULL in old ones);
- `ratings.csv`'s loop columns (the per-row lists as JSON; `dataset.COLUMNS` gives the order);
- the player process's rows (`player/protocol.Row`: note, steps, levels).

A `steps` string has 'x' for a hit and '.' for a rest; a `levels` string '.' for a rest and '1'-'9' for
a hit's level (`sound/dynamics`, where the default level of a loop stored without levels is defined).
Plain Python, no torch: the player process, `send` and the web page's server may import it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from deepdrummer_live.sound.dynamics import check_levels, default_levels, parse_level, steps_of
from deepdrummer_live.vocab import DEFAULT_METER, DEFAULT_TEMPO, shape_problem, steps_per_bar

# The store's loop columns, in the order the store writes them; `grid` holds the rows' steps.
STORE_COLUMNS = ("id", "created", "kit", "samples", "notes", "roles", "grid", "p_like", "mode", "bpm", "levels",
                 "meter")
# ratings.csv's columns that describe the loop (the rest are the rating's: dataset.COLUMNS)
CSV_LIST_COLUMNS = ("samples", "notes", "roles", "steps", "levels")


@dataclass(frozen=True)
class LoopRow:
    """One row of a loop."""

    sample: str  # the kit sample's name
    role: str  # the sample's role (kick, snare...); "" where the source does not say (a /dd/loop message)
    note: int  # the MIDI note it goes out on (after the note map)
    steps: str  # 'x' hit, '.' rest, one per step
    levels: str  # '.' rest, '1'-'9' a hit's level, one per step

    @property
    def n_hits(self) -> int:
        return self.steps.count("x")

    def on(self, step: int) -> bool:
        return self.steps[step] == "x"

    def level(self, step: int) -> int:
        """0 on a rest, else the hit's level 1-9."""
        return parse_level(self.levels[step])

    @property
    def level_values(self) -> list[int]:
        return [parse_level(c) for c in self.levels]

    def player_row(self) -> dict:
        """What the player process plays (`player/protocol.Row`)."""
        return {"note": self.note, "steps": self.steps, "levels": self.levels}


@dataclass(frozen=True)
class LoopRecord:
    """A loop: its rows, tempo, swing and shape, and where it came from (kit, the critic's P(like), mode)."""

    id: int
    rows: tuple[LoopRow, ...]
    tempo: float = DEFAULT_TEMPO  # BPM when it was proposed (the store's `bpm`, the CSV's `tempo`)
    swing: float = 0.0  # odd steps late by this x one step; not stored (the session's swing applies)
    meter: str = DEFAULT_METER  # the steps run over every bar of this meter
    kit: str = ""
    p_like: float = 0.0  # the critic's P(like) when it was proposed
    mode: str = ""

    @classmethod
    def of(cls, *, samples: Sequence[str], steps: Sequence[str] | None = None, levels: Sequence[str] | None = None,
           notes: Sequence[int] | None = None, roles: Sequence[str] | None = None, id: int = 0,
           **fields) -> LoopRecord:
        """A record from per-row lists (the columns of the store and of ratings.csv). Without `levels`
        every hit is at the default level; without `steps` they are those of the levels; without
        notes or roles (an empty list too) they are 0 and "". ValueError when the lists do not fit."""
        if levels is None:
            if steps is None:
                raise ValueError("a loop needs its steps or its levels")
            levels = default_levels(list(steps))
        steps = steps_of(list(levels)) if steps is None else list(steps)
        notes = list(notes) if notes else [0] * len(samples)
        roles = list(roles) if roles else [""] * len(samples)
        if not len(samples) == len(notes) == len(roles) == len(steps):
            raise ValueError(f"{len(samples)} samples, {len(notes)} notes, {len(roles)} roles and {len(steps)} "
                             f"steps strings: a loop needs one of each per row")
        check_levels(steps, list(levels))
        rows = tuple(LoopRow(str(s), str(r), int(n), str(st), str(lv))
                     for s, r, n, st, lv in zip(samples, roles, notes, steps, levels))
        return cls(int(id), rows, **fields)

    # --- what it is ---------------------------------------------------------------------------------

    @property
    def samples(self) -> list[str]:
        return [r.sample for r in self.rows]

    @property
    def roles(self) -> list[str]:
        return [r.role for r in self.rows]

    @property
    def notes(self) -> list[int]:
        return [r.note for r in self.rows]

    @property
    def steps(self) -> list[str]:
        return [r.steps for r in self.rows]

    @property
    def levels(self) -> list[str]:
        return [r.levels for r in self.rows]

    @property
    def n_steps(self) -> int:
        return len(self.rows[0].steps) if self.rows else 0

    @property
    def steps_per_bar(self) -> int:
        return steps_per_bar(self.meter)

    @property
    def bars(self) -> int:
        return max(1, self.n_steps // self.steps_per_bar)

    def shape_problem(self) -> str | None:
        """What is wrong with its shape (a sentence), or None: a known meter, rows of one length, whole bars."""
        problem = shape_problem(meter=self.meter)
        if problem:
            return problem
        if len({len(s) for s in self.steps}) != 1 or self.n_steps % self.steps_per_bar:
            return f"steps {self.steps!r} are not whole bars of {self.meter} ({self.steps_per_bar} steps)"
        return None

    def with_notes(self, notes: Sequence[int]) -> LoopRecord:
        return replace(self, rows=tuple(replace(r, note=int(n)) for r, n in zip(self.rows, notes, strict=True)))

    # --- the player process ----------------------------------------------------------------------------

    def player_rows(self) -> list[dict]:
        return [r.player_row() for r in self.rows]

    # --- OSC -------------------------------------------------------------------------------------------

    def loop_args(self) -> list:
        """/dd/loop's arguments."""
        args: list = [self.id, float(self.p_like), float(self.tempo), self.n_steps]
        for r in self.rows:
            args += [r.sample, r.note, r.steps]
        return args

    def levels_args(self) -> list:
        """/dd/levels' arguments."""
        return [self.id, *self.levels]

    def shape_args(self) -> list:
        """/dd/shape's arguments."""
        return [self.id, self.steps_per_bar, self.bars, self.meter]

    @classmethod
    def from_osc(cls, loop: Sequence, levels: Sequence | None = None, shape: Sequence | None = None,
                 role: Callable[[str, int], str] | None = None) -> LoopRecord:
        """The arguments of a /dd/loop, and of the /dd/levels and /dd/shape that follow it when given
        (without them: every hit at the default level, 4/4) -> a record; `role(sample, note)` names each
        row's role (else ""). ValueError naming what does not fit."""
        loop_id, p_like, bpm, _, rows = decode_loop_args(loop)
        row_levels = decode_levels_args(levels, loop_id, len(rows)) if levels is not None else None
        meter = decode_shape_args(shape, loop_id)[3] if shape is not None else DEFAULT_METER
        samples = [s for s, _, _ in rows]
        notes = [n for _, n, _ in rows]
        roles = [role(s, n) for s, n, _ in rows] if role is not None else None
        return cls.of(id=loop_id, samples=samples, notes=notes, roles=roles, steps=[st for _, _, st in rows],
                      levels=row_levels, tempo=bpm, p_like=p_like, meter=meter)

    # --- the store's columns -------------------------------------------------------------------------

    def store_values(self) -> dict:
        """The store's `loops` columns but id and created (STORE_COLUMNS)."""
        return {"kit": self.kit, "samples": json.dumps(self.samples), "notes": json.dumps(self.notes),
                "roles": json.dumps(self.roles), "grid": "|".join(self.steps), "p_like": float(self.p_like),
                "mode": self.mode, "bpm": float(self.tempo), "levels": "|".join(self.levels), "meter": self.meter}

    @classmethod
    def from_store(cls, row: Mapping) -> LoopRecord:
        """A `loops` row by column name; a state dir from before levels or shapes (no such column, or
        NULL) reads as every hit at the default level, one bar of 4/4."""
        levels = row.get("levels")
        p_like = row.get("p_like")
        return cls.of(id=int(row["id"]), kit=row["kit"] or "", samples=json.loads(row["samples"]),
                      notes=[int(n) for n in json.loads(row["notes"])], roles=json.loads(row["roles"]),
                      steps=row["grid"].split("|"), levels=levels.split("|") if levels else None,
                      p_like=float(p_like or 0.0), mode=row["mode"] or "", tempo=float(row["bpm"] or DEFAULT_TEMPO),
                      meter=row.get("meter") or DEFAULT_METER)

    # --- ratings.csv's columns -----------------------------------------------------------------------

    def csv_cells(self) -> dict:
        """ratings.csv's loop columns."""
        row = {"loop_id": self.id, "kit": self.kit, "tempo": f"{self.tempo:g}", "n_steps": self.n_steps,
               "meter": self.meter, "bars": self.bars, "p_like": f"{self.p_like:.4f}", "mode": self.mode}
        for col in CSV_LIST_COLUMNS:
            row[col] = json.dumps(getattr(self, col))
        return row

    @classmethod
    def from_csv_cells(cls, row: Mapping) -> LoopRecord:
        """ratings.csv's loop columns -> a record (a dataset from before levels: every hit at the default
        level; before shapes: 4/4). ValueError (or KeyError, TypeError) naming what is wrong."""
        samples = json.loads(row["samples"])
        loop = cls.of(id=int(row["loop_id"]), kit=row.get("kit") or "", samples=samples,
                      notes=[int(n) for n in json.loads(row.get("notes") or "[]")],
                      roles=json.loads(row.get("roles") or "[]"), steps=json.loads(row["steps"]),
                      levels=json.loads(row["levels"]) if row.get("levels") else None,
                      tempo=float(row.get("tempo") or DEFAULT_TEMPO), p_like=float(row.get("p_like") or 0.0),
                      mode=row.get("mode") or "", meter=row.get("meter") or DEFAULT_METER)
        problem = loop.shape_problem()
        if problem:
            raise ValueError(problem)
        return loop


# --- OSC arguments, one message at a time (also the public client's: client.Loop, Levels, Shape) ----------

def decode_loop_args(args: Sequence) -> tuple[int, float, float, int, list[tuple[str, int, str]]]:
    """/dd/loop's arguments -> (loop_id, p_like, bpm, n_steps, [(sample, note, steps) per row]);
    ValueError naming what does not fit the contract."""
    args = list(args)
    if len(args) < 4 or (len(args) - 4) % 3:
        raise ValueError(f"/dd/loop with {len(args)} argument(s) {args!r}; the contract gives loop_id, p_like, "
                         f"bpm, n_steps, then 3 per row (sample, note, steps)")
    loop_id, n_steps = int(args[0]), int(args[3])
    rows = [(str(args[i]), int(args[i + 1]), str(args[i + 2])) for i in range(4, len(args), 3)]
    if any(len(st) != n_steps for _, _, st in rows):
        raise ValueError(f"/dd/loop {loop_id}: steps {[st for _, _, st in rows]!r} are not {n_steps} long")
    return loop_id, float(args[1]), float(args[2]), n_steps, rows


def decode_levels_args(args: Sequence, loop_id: int | None = None, n_rows: int | None = None) -> list[str]:
    """/dd/levels' arguments -> the levels per row; with `loop_id` and `n_rows`, ValueError unless they
    are those of that /dd/loop."""
    if len(args) < 1 or (loop_id is not None and (int(args[0]) != loop_id or len(args) - 1 != n_rows)):
        raise ValueError(f"/dd/levels {list(args)!r} is not for /dd/loop {loop_id} with {n_rows} rows")
    return [str(a) for a in args[1:]]


def decode_shape_args(args: Sequence, loop_id: int | None = None) -> tuple[int, int, int, str]:
    """/dd/shape's arguments -> (loop_id, steps_per_bar, bars, meter); with `loop_id`, ValueError unless
    it is that /dd/loop's."""
    if len(args) < 4 or (loop_id is not None and int(args[0]) != loop_id):
        raise ValueError(f"/dd/shape {list(args)!r} is not for /dd/loop {loop_id}")
    return int(args[0]), int(args[1]), int(args[2]), str(args[3])
