"""Controller mappings: TOML files that turn incoming notes/CCs into actions.

File format (see deepdrummer_live/data/controllers/generic.toml):

    name = "Generic"
    channel = "any"            # default for entries: 1..16 or "any"

    [[note]]                   # a note-on with velocity > 0 triggers
    note = 36
    action = "like"

    [[cc]]
    cc = 20
    channel = 1                # overrides the file default
    action = "tempo"
    value = "absolute"         # CC 0..127 -> 20..300 BPM

Actions and their `value`:
    like, dislike, next, undo, save, play, stop    no value
    mode     "cycle" (default) | "explore" | "good" | "bad" | "random"
    tempo    "absolute" (CC only: 0..127 -> 20..300 BPM) or a signed BPM step like -1 or 5
    fotf     "toggle" (default) | 0 | 1 | "cc" (CC only: value >= 64 is on)
    lock     the row, 0-based as in /dd/lock (0..15): toggles that row's lock
A button CC triggers when its value goes from < 64 to >= 64 (press, not release).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from deepdrummer_live import paths
from deepdrummer_live.errors import UsageError

ACTIONS = ("like", "dislike", "next", "undo", "mode", "tempo", "fotf", "save", "play", "stop", "lock")
MAX_ROWS = 16
MODES = ("explore", "good", "bad", "random")
MIN_BPM, MAX_BPM = 20.0, 300.0
CC_ON = 64  # MIDI's switch threshold: a CC value >= 64 is "on" / "pressed"
CC_MAX = 127
DEFAULT_BPM = 120.0  # the +/- steps' base until the player reports the tempo


@dataclass(frozen=True)
class Binding:
    kind: str  # "note" | "cc"
    number: int
    channel: int | None  # zero-based; None = any
    action: str
    value: object  # normalised, see module doc


@dataclass
class ControllerMap:
    name: str
    path: Path | None
    bindings: list[Binding]

    def __post_init__(self) -> None:
        self._index: dict[tuple[str, int, int | None], Binding] = {
            (b.kind, b.number, b.channel): b for b in self.bindings}
        self._cc_last: dict[tuple[int, int], int] = {}
        self.tempo_hint = DEFAULT_BPM  # the player keeps this current so +/- steps have a base
        self.ignored = 0

    def bind(self, binding: Binding) -> None:
        """Add `binding`, replacing the one for the same note/CC and channel (MIDI learn, overlays)."""
        k = (binding.kind, binding.number, binding.channel)
        self.bindings = [b for b in self.bindings if (b.kind, b.number, b.channel) != k] + [binding]
        self._index[k] = binding

    def _find(self, kind: str, number: int, channel: int) -> Binding | None:
        return self._index.get((kind, number, channel)) or self._index.get((kind, number, None))

    def handle(self, data: list[int]) -> dict | None:
        """A `control` event for a mapped message, else None (counted in `ignored`)."""
        if len(data) < 3 or not 0x80 <= data[0] < 0xF0:
            self.ignored += 1
            return None
        kind_nibble, channel = data[0] & 0xF0, data[0] & 0x0F
        number, value = data[1], data[2]
        if kind_nibble == 0x90 and value > 0:
            binding = self._find("note", number, channel)
            pressed = binding is not None
            cc_value = None
        elif kind_nibble == 0xB0:
            binding = self._find("cc", number, channel)
            last = self._cc_last.get((channel, number), 0)
            self._cc_last[(channel, number)] = value
            pressed = last < CC_ON <= value
            cc_value = value
        else:
            binding = None
            pressed = False
            cc_value = None
        if binding is None:
            self.ignored += 1
            return None
        out = self._resolve(binding, pressed, cc_value)
        if out is None:
            return None
        return {"type": "control", "action": binding.action, "value": out[0]}

    def _resolve(self, b: Binding, pressed: bool, cc_value: int | None) -> tuple | None:
        if b.action == "tempo" and b.value == "absolute":
            if cc_value is None:
                return None
            bpm = round(MIN_BPM + (MAX_BPM - MIN_BPM) * cc_value / CC_MAX, 1)
            self.tempo_hint = bpm
            return (bpm,)
        if b.action == "fotf" and b.value == "cc":
            if cc_value is None:
                return None
            on = 1 if cc_value >= CC_ON else 0
            last_key = ("fotf", b.number)
            if self._cc_last.get(last_key) == on:  # a knob sweeping above CC_ON is one change
                return None
            self._cc_last[last_key] = on
            return (on,)
        if not pressed:
            return None
        if b.action == "tempo":
            bpm = min(MAX_BPM, max(MIN_BPM, self.tempo_hint + float(b.value)))
            self.tempo_hint = bpm
            return (bpm,)
        return (b.value,)


def _channel(raw, where: str, path: Path) -> int | None:
    if raw is None or raw == "any":
        return None
    if isinstance(raw, int) and not isinstance(raw, bool) and 1 <= raw <= 16:
        return raw - 1
    raise UsageError(f"{path}: {where}: channel {raw!r} is invalid; use 1..16 or \"any\"")


def _value(action: str, kind: str, raw, where: str, path: Path):
    if action in ("like", "dislike", "next", "undo", "save", "play", "stop"):
        if raw is not None:
            raise UsageError(f"{path}: {where}: action {action!r} takes no value (got {raw!r}); "
                             f"remove the value line")
        return None
    if action == "mode":
        raw = "cycle" if raw is None else raw
        if raw not in ("cycle",) + MODES:
            raise UsageError(f"{path}: {where}: mode value {raw!r} is unknown; use \"cycle\" or one "
                             f"of {', '.join(MODES)}")
        return raw
    if action == "tempo":
        if raw == "absolute":
            if kind != "cc":
                raise UsageError(f"{path}: {where}: tempo value \"absolute\" needs a [[cc]] entry; "
                                 f"for a note use a BPM step such as 1 or -1")
            return raw
        if isinstance(raw, (int, float)) and not isinstance(raw, bool) and 0 < abs(raw) <= 100:
            return float(raw)
        raise UsageError(f"{path}: {where}: tempo value {raw!r} is invalid; use \"absolute\" (CC) or "
                         f"a BPM step between -100 and 100, not 0")
    if action == "fotf":
        raw = "toggle" if raw is None else raw
        if raw == "cc" and kind != "cc":
            raise UsageError(f"{path}: {where}: fotf value \"cc\" needs a [[cc]] entry; use \"toggle\", 0 or 1")
        if raw in ("toggle", "cc") or (raw in (0, 1) and not isinstance(raw, bool)):
            return raw
        raise UsageError(f"{path}: {where}: fotf value {raw!r} is invalid; use \"toggle\", 0, 1 or \"cc\"")
    if action == "lock":
        if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < MAX_ROWS:
            return raw
        raise UsageError(f"{path}: {where}: lock value {raw!r} is invalid; use the row, 0-{MAX_ROWS - 1} "
                         f"(0-based, as in /dd/lock)")
    raise AssertionError(action)


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
            if not (isinstance(number, int) and not isinstance(number, bool) and 0 <= number <= CC_MAX):
                raise UsageError(f"{path}: {where}: {kind} {number!r} is invalid; use 0..127")
            action = entry.get("action")
            if action not in ACTIONS:
                raise UsageError(f"{path}: {where}: action {action!r} is unknown; use one of "
                                 f"{', '.join(ACTIONS)}")
            channel = _channel(entry.get("channel"), where, path) if "channel" in entry else default_channel
            value = _value(action, kind, entry.get("value"), where, path)
            key = (kind, number, channel)
            if key in seen:
                raise UsageError(f"{path}: {where} maps {kind} {number} on the same channel as "
                                 f"{seen[key]}; remove one of them")
            seen[key] = where
            bindings.append(Binding(kind, number, channel, action, value))
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
