"""Controller mappings: TOML files that turn incoming notes/CCs into commands of the one table.

File format (see deepdrummer_live/data/controllers/generic.toml):

    name = "Generic"
    channel = "any"            # default for entries: 1..16 or "any"

    [[note]]                   # a note-on with velocity > 0 triggers
    note = 36
    action = "like"            # any command of commands.py (docs/protocol.md lists them)

    [[cc]]
    cc = 20
    channel = 1                # overrides the file default
    action = "tempo"
    value = "cc"               # the CC's 0..127 spread over the command's range (20..300 BPM)

`value` gives the command's arguments: none, one value, or a list (`value = [0, 1]`), checked
against the command table when the file loads; or "cc" on a [[cc]] entry for a one-number
command, which then follows the knob. Shorthands kept from the first format:
    mode     "cycle" (default: mode_cycle) | "explore" | "good" | "bad" | "random"
    tempo    "absolute" (= "cc") or a signed BPM step like -1 or 5 (tempo_nudge)
    fotf     "toggle" (default: fotf_toggle) | 0 | 1 | "cc" (value >= 64 is on)
    lock     the row, 0-based as in /dd/lock: toggles that row's lock (lock_toggle)
A button CC triggers when its value goes from < 64 to >= 64 (press, not release).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from deepdrummer_live import commands, paths
from deepdrummer_live.errors import DeepDrummerError, UsageError
from deepdrummer_live.vocab import MODES

CC_PRESS = 64  # a CC at or above this is "pressed" / "on"
CC_MAX = 127
FOLLOW = "cc"  # the value that makes a command follow a knob


@dataclass(frozen=True)
class Binding:
    kind: str  # "note" | "cc"
    number: int
    channel: int | None  # zero-based; None = any
    action: str  # a command name
    value: tuple | str  # the command's arguments, or FOLLOW


@dataclass
class ControllerMap:
    name: str
    path: Path | None
    bindings: list[Binding]

    def __post_init__(self) -> None:
        self._index: dict[tuple[str, int, int | None], Binding] = {
            (b.kind, b.number, b.channel): b for b in self.bindings}
        self._cc_last: dict[tuple, int] = {}
        self.ignored = 0

    def bind(self, binding: Binding) -> None:
        """Add `binding`, replacing the one for the same note/CC and channel (MIDI learn, overlays)."""
        k = (binding.kind, binding.number, binding.channel)
        self.bindings = [b for b in self.bindings if (b.kind, b.number, b.channel) != k] + [binding]
        self._index[k] = binding

    def _find(self, kind: str, number: int, channel: int) -> Binding | None:
        return self._index.get((kind, number, channel)) or self._index.get((kind, number, None))

    def handle(self, data: list[int]) -> dict | None:
        """A `control` event (command name and arguments) for a mapped message, else None."""
        if len(data) < 3 or not 0x80 <= data[0] < 0xF0:
            self.ignored += 1
            return None
        kind_nibble, channel = data[0] & 0xF0, data[0] & 0x0F
        number, value = data[1], data[2]
        binding, pressed, cc_value = None, False, None
        if kind_nibble == 0x90 and value > 0:
            binding = self._find("note", number, channel)
            pressed = binding is not None
        elif kind_nibble == 0xB0:
            binding = self._find("cc", number, channel)
            last = self._cc_last.get((channel, number), 0)
            self._cc_last[(channel, number)] = value
            pressed = last < CC_PRESS <= value
            cc_value = value
        if binding is None:
            self.ignored += 1
            return None
        args = self._resolve(binding, pressed, cc_value)
        if args is None:
            return None
        return {"type": "control", "command": binding.action, "args": list(args)}

    def _resolve(self, b: Binding, pressed: bool, cc_value: int | None) -> tuple | None:
        if b.value != FOLLOW:
            return b.value if pressed else None
        if cc_value is None:
            return None
        param = commands.lookup(b.action).params[0]
        if param.kind == "int" and param.lo == 0 and param.hi == 1:  # a switch: act on changes only
            on = 1 if cc_value >= CC_PRESS else 0
            key = ("switch", b.action, b.number)
            if self._cc_last.get(key) == on:
                return None
            self._cc_last[key] = on
            return (on,)
        value = param.lo + (param.hi - param.lo) * cc_value / CC_MAX
        return (round(value) if param.kind == "int" else round(value, 3),)


def program_event(data: list[int]) -> dict | None:
    """A Program Change (any channel) -> a `program` event for the main process, which makes the n-th
    taste profile current (contract v1.2); it needs no mapping file. None for any other message."""
    if len(data) >= 2 and data[0] & 0xF0 == 0xC0 and 0 <= data[1] <= 127:
        return {"type": "program", "number": int(data[1])}
    return None


def _channel(raw, where: str, path: Path) -> int | None:
    if raw is None or raw == "any":
        return None
    if isinstance(raw, int) and not isinstance(raw, bool) and 1 <= raw <= 16:
        return raw - 1
    raise UsageError(f"{path}: {where}: channel {raw!r} is invalid; use 1..16 or \"any\"")


def _shorthand(action: str, kind: str, raw, where: str, path: Path) -> tuple[str, object]:
    """The first format's values for mode, tempo and fotf -> (command, value)."""
    if action == "mode":
        raw = "cycle" if raw is None else raw
        if raw == "cycle":
            return "mode_cycle", None
        if raw not in MODES:
            raise UsageError(f"{path}: {where}: mode value {raw!r} is unknown; use \"cycle\" or one "
                             f"of {', '.join(MODES)}")
        return "mode", raw
    if action == "tempo":
        if raw in ("absolute", FOLLOW):
            return "tempo", FOLLOW
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            if not 0 < abs(raw) <= 100:
                raise UsageError(f"{path}: {where}: tempo value {raw!r} is invalid; use \"absolute\" (CC) or "
                                 f"a BPM step between -100 and 100, not 0")
            return "tempo_nudge", float(raw)
        return "tempo", raw
    if action == "fotf" and raw in (None, "toggle"):
        return "fotf_toggle", None
    if action == "lock" and isinstance(raw, int) and not isinstance(raw, bool):
        return "lock_toggle", raw
    return action, raw


def make_binding(kind: str, number: int, channel: int | None, action: str, raw=None, where: str = "binding",
                 path: Path | str = "controller") -> Binding:
    """A binding from a mapping entry's action and value (shorthands included), checked against the table."""
    if action not in commands.COMMANDS and action not in ("mode", "tempo", "fotf", "lock"):
        raise UsageError(f"{path}: {where}: action {action!r} is unknown; use one of "
                         f"{', '.join(sorted(commands.COMMANDS))}")
    action, value = _binding_value(action, kind, raw, where, Path(path))
    return Binding(kind, number, channel, action, value)


def value_for_file(b: Binding):
    """A binding's value as a mapping file writes it (None: no value line)."""
    if b.value == FOLLOW:
        return FOLLOW
    return None if not b.value else b.value[0] if len(b.value) == 1 else list(b.value)


def _binding_value(action: str, kind: str, raw, where: str, path: Path) -> tuple[str, tuple | str]:
    action, raw = _shorthand(action, kind, raw, where, path)
    cmd = commands.lookup(action)
    if raw == FOLLOW:
        if kind != "cc":
            raise UsageError(f"{path}: {where}: value \"{FOLLOW}\" (or \"absolute\") needs a [[cc]] entry; "
                             f"for a note give a fixed value")
        numeric = [p for p in cmd.params if p.kind in ("int", "float") and p.lo is not None and p.hi is not None]
        if len(cmd.params) != 1 or len(numeric) != 1:
            raise UsageError(f"{path}: {where}: action {action!r} cannot follow a CC (it takes "
                             f"{cmd.usage()}); give a fixed value")
        return action, FOLLOW
    args = () if raw is None else tuple(raw) if isinstance(raw, list) else (raw,)
    try:
        return action, cmd.check(args)
    except DeepDrummerError as exc:
        raise UsageError(f"{path}: {where}: {exc}") from exc


def parse_mapping(doc: dict, path: Path) -> ControllerMap:
    default_channel = _channel(doc.get("channel"), "top-level channel", path)
    known_top = {"name", "description", "channel", "note", "cc"}
    for key in doc:
        if key not in known_top:
            raise UsageError(f"{path}: unknown key {key!r}; use only {', '.join(sorted(known_top))}")
    bindings: list[Binding] = []
    seen: dict[tuple, str] = {}
    for kind in ("note", "cc"):
        entries = doc.get(kind, [])
        if not isinstance(entries, list):
            raise UsageError(f"{path}: {kind!r} must be an array of tables; write [[{kind}]] entries")
        for i, entry in enumerate(entries):
            where = f"[[{kind}]] #{i + 1}"
            if not isinstance(entry, dict):
                raise UsageError(f"{path}: {where} is not a table; write [[{kind}]] then key = value lines")
            extra = set(entry) - {kind, "channel", "action", "value", "label"}
            if extra:
                raise UsageError(f"{path}: {where}: unknown key(s) {', '.join(sorted(extra))}; "
                                 f"use {kind}, channel, action, value, label")
            number = entry.get(kind)
            if not (isinstance(number, int) and not isinstance(number, bool) and 0 <= number <= 127):
                raise UsageError(f"{path}: {where}: {kind} {number!r} is invalid; use 0..127")
            channel = _channel(entry.get("channel"), where, path) if "channel" in entry else default_channel
            binding = make_binding(kind, number, channel, entry.get("action"), entry.get("value"), where, path)
            key = (kind, number, channel)
            if key in seen:
                raise UsageError(f"{path}: {where} maps {kind} {number} on the same channel as "
                                 f"{seen[key]}; remove one of them")
            seen[key] = where
            bindings.append(binding)
    name = doc.get("name", path.stem)
    return ControllerMap(str(name), path, bindings)


def resolve_path(name_or_file: str | Path) -> Path:
    """A built-in mapping's name ("akai-mpd218", package data) or a path to a .toml file."""
    candidate = Path(name_or_file).expanduser()
    if candidate.is_file():
        return candidate
    by_name = paths.controllers_dir() / f"{name_or_file}.toml"
    if by_name.is_file():
        return by_name
    names = sorted(p.stem for p in paths.controllers_dir().glob("*.toml"))
    raise UsageError(f"--controller {name_or_file}: no such mapping file or name; use a path to a "
                     f".toml file or one of: {', '.join(names) or '(none installed)'}")


def load_mapping(name_or_file: str | Path) -> ControllerMap:
    path = resolve_path(name_or_file)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML ({exc}); fix the syntax "
                         f"(see {paths.controllers_dir() / 'generic.toml'})") from exc
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror}); check the path and permissions") from exc
    return parse_mapping(doc, path)
