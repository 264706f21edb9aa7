"""Note maps: which MIDI note each drum role goes out on, and one distinct note per row.

A note map (`--note-map NAME|FILE`; package data `data/notemaps/NAME.toml`, GM by default) lists
per role the notes the user's instrument plays it on, in order of preference. `assign` gives each
row of a loop its role's first note that no earlier row took, so two rows of one role (two
kicks, two claps) never merge into one note in a DAW or a sampler: kick 36 then 35, snare 38 then
40, hats 42/44/46... When a role's notes are all taken, the row takes the map's first free
`spare` note, then the first free note upwards from its role's first note. The loop's `/dd/loop`
midi_note, the MIDI port, the library .mid and its .sfz all use the assigned notes.

Imports nothing heavy: the player process and the CLI read it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from deepdrummer_live import paths
from deepdrummer_live.errors import UsageError

DEFAULT_MAP = "gm"
FALLBACK_ROLE = "perc"  # a role the map does not list plays where the map puts "perc"


def available() -> list[str]:
    """The names of the shipped note maps."""
    return sorted(p.stem for p in paths.notemaps_dir().glob("*.toml"))


@dataclass(frozen=True)
class NoteMap:
    name: str
    notes: dict[str, tuple[int, ...]]  # role -> notes, preferred first
    kit_notes: bool = False  # True: a kit's own note for a sample comes before the role's notes
    spare: tuple[int, ...] = ()

    @staticmethod
    def load(spec: str | None) -> NoteMap:
        """A shipped map by name (None: GM) or a .toml file; UsageError naming the problem and the fix."""
        spec = spec or DEFAULT_MAP
        path = Path(spec).expanduser()
        if path.suffix == ".toml" or path.exists():
            where = str(path)
            try:
                text = path.read_text()
            except OSError as exc:
                raise UsageError(f"note map {spec}: cannot read it ({exc.strerror or exc}); give a "
                                 f"readable .toml file or one of {', '.join(available())}") from exc
        else:
            resource = paths.notemaps_dir() / f"{spec}.toml"
            if not resource.is_file():
                raise UsageError(f"note map {spec}: no such map; use one of {', '.join(available())} "
                                 f"or a .toml file (see docs/protocol.md, note maps)")
            where, text = f"note map {spec}", resource.read_text()
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{where}: not valid TOML ({exc}); fix the file") from exc
        return NoteMap.from_dict(data, where, default_name=path.stem if where == str(path) else spec)

    @staticmethod
    def from_dict(data: dict, where: str, default_name: str = "custom") -> NoteMap:
        roles = data.get("roles")
        if not isinstance(roles, dict) or FALLBACK_ROLE not in roles:
            raise UsageError(f"{where}: needs a [roles] table with at least `{FALLBACK_ROLE} = [note, ...]`")
        notes = {role: _notes(value, f"{where}: roles.{role}") for role, value in roles.items()}
        spare = _notes(data.get("spare", []), f"{where}: spare", allow_empty=True)
        kit_notes = data.get("kit_notes", False)
        if not isinstance(kit_notes, bool):
            raise UsageError(f"{where}: kit_notes = {kit_notes!r}; use true or false")
        return NoteMap(str(data.get("name", default_name)), notes, kit_notes, spare)

    def role_notes(self, role: str) -> tuple[int, ...]:
        return self.notes.get(role) or self.notes[FALLBACK_ROLE]

    def assign(self, roles: list[str], kit_notes: list[int], fixed: dict[int, int] | None = None) -> list[int]:
        """One distinct note per row: the first free of (the kit's note when the map keeps it, the
        role's notes, the spare notes, every note upwards from the role's first, then downwards).
        `fixed` {row: note}: rows that keep their note (locked rows); the others avoid those notes."""
        fixed = fixed or {}
        used: set[int] = set(fixed.values())
        out = []
        for row, (role, kit_note) in enumerate(zip(roles, kit_notes)):
            if row in fixed:
                out.append(fixed[row])
                continue
            preferred = self.role_notes(role)
            candidates = ((kit_note,) if self.kit_notes else ()) + preferred + self.spare
            start = preferred[0]
            candidates += tuple(range(start, 128)) + tuple(range(start - 1, -1, -1))
            note = next(n for n in candidates if n not in used)
            used.add(note)
            out.append(note)
        return out


def _notes(value, where: str, allow_empty: bool = False) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (not isinstance(value, list) or (not value and not allow_empty)
            or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 127 for n in value)):
        raise UsageError(f"{where} = {value!r}: use a list of MIDI notes 0-127, e.g. [36, 35]")
    return tuple(value)
