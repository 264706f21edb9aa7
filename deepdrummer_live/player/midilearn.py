"""MIDI learn: the next note or CC a controller sends is bound to an action and saved.

`/dd/learn s action [i row]` (also the terminal surface) arms it. The player process, which owns
the MIDI input, forwards the next press (a note-on, or a CC reaching 64) as a `learn_midi` event
instead of mapping it; the main process turns it into a `Binding`, writes it to the learned
mapping file `<state-dir>/controller.toml` (the format of `data/controllers/*.toml`), sends the
binding back to the player (`bind`), and once the player has it (`learn_bound`) announces
`/dd/learned s action s binding`. Once the
player listens, `/dd/learning s action` says "press the pad now".

On the next start the learned file is laid over the `--controller` mapping (or used alone), so a
learned pad keeps working. Delete the file to forget what was learned.
"""

from __future__ import annotations

import json
import os
import threading
import tomllib
from pathlib import Path

from deepdrummer_live.errors import CommandError, UsageError
from deepdrummer_live.player.controller import Binding, ControllerMap, make_binding, parse_mapping, value_for_file
from deepdrummer_live.vocab import LEARNABLE_ACTIONS, MAX_ROWS

LEARNED_FILE = "controller.toml"
ANY = '"any"'


def is_press(data: list[int]) -> bool:
    """A note-on with velocity > 0, or a CC at 64 or above: what a pad or button sends when hit."""
    if len(data) < 3:
        return False
    kind = data[0] & 0xF0
    return (kind == 0x90 and data[2] > 0) or (kind == 0xB0 and data[2] >= 64)


def target(action: str, row: int | None = None) -> tuple[str, object]:
    """(action, binding value) for a learn request; CommandError naming the fix for a bad one."""
    if action not in LEARNABLE_ACTIONS:
        raise CommandError(f"cannot learn {action!r}; use one of {', '.join(LEARNABLE_ACTIONS)}")
    if action == "lock":
        if row is None or not 0 <= row < MAX_ROWS:
            raise CommandError(f"learning lock needs the row, 0-{MAX_ROWS - 1} as in /dd/lock "
                           f"(got {row!r}): /dd/learn lock ROW")
        return action, row
    if row is not None:
        raise CommandError(f"{action!r} takes no row (got {row}); give a row only to lock")
    return action, LEARNABLE_ACTIONS[action]


def binding_from_midi(data: list[int], action: str, value) -> Binding:
    """The binding for a pressed note/CC, on that message's own channel."""
    kind = "note" if data[0] & 0xF0 == 0x90 else "cc"
    return make_binding(kind, data[1], data[0] & 0x0F, action, value, "MIDI learn")


def describe(b: Binding) -> str:
    """`note 36 ch 10` (channels 1-16, as controllers and DAWs number them)."""
    return f"{b.kind} {b.number} ch {'any' if b.channel is None else b.channel + 1}"


def to_toml(m: ControllerMap) -> str:
    """A mapping file that `controller.load_mapping` reads back to the same bindings."""
    lines = ["# Learned with /dd/learn (MIDI learn); laid over --controller at start. Delete to forget.",
             f'name = "{m.name}"', ""]
    for b in m.bindings:
        lines.append(f"[[{b.kind}]]")
        lines.append(f"{b.kind} = {b.number}")
        lines.append(f"channel = {ANY if b.channel is None else b.channel + 1}")
        lines.append(f'action = "{b.action}"')
        value = value_for_file(b)
        if value is not None:
            lines.append(f"value = {json.dumps(value)}")  # a JSON string, number or list is TOML too
        lines.append("")
    return "\n".join(lines)


def load_learned(path: Path) -> ControllerMap | None:
    """The learned mapping, or None when nothing was learned yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the learned controller mapping ({exc.strerror}); "
                         f"check its permissions or delete it") from exc
    try:
        return parse_mapping(tomllib.loads(text), path)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc}); delete it to forget what was learned") from exc


def overlay(base: ControllerMap | None, learned: ControllerMap | None) -> ControllerMap:
    """The --controller mapping with learned bindings laid over it (either may be missing)."""
    out = ControllerMap(base.name if base else "learned", base.path if base else None,
                        list(base.bindings) if base else [])
    for b in learned.bindings if learned else ():
        out.bind(b)
    return out


def save_learned(path: Path, binding: Binding) -> None:
    """Add `binding` to the learned file, durably (temp file, fsync, rename)."""
    learned = load_learned(path) or ControllerMap("learned", path, [])
    learned.bind(binding)
    tmp = path.with_suffix(".toml.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(to_toml(learned))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class MidiLearn:
    """The main-process side: arms the player, saves what it forwards, announces it."""

    def __init__(self, path: Path, out):
        self.path = path
        self.out = out  # out(address, *args, origin=...): to every subscriber, and to whoever asked
        self._pending: tuple[str, object] | None = None
        self._origin = None  # who sent /dd/learn: /dd/learning and /dd/learned answer them too
        self._announce: tuple[str, str] | None = None  # /dd/learned's args, once the player has the binding
        self.choosing = False  # the terminal surface's `L` waits for the action's key
        self._lock = threading.Lock()

    def start(self, player, action: str, row: int | None = None, origin=None) -> None:
        wanted = target(action, row)
        if not getattr(player, "can_learn", False):
            raise CommandError("MIDI learn needs a MIDI input port; run with --midi-in NAME "
                           "(and a --midi-backend other than none)")
        with self._lock:
            self._pending, self._origin = wanted, origin
        player.learn()

    def on_armed(self, on: bool) -> None:
        """The player is listening for the press: say so (a surface shows "press a pad")."""
        with self._lock:
            wanted, origin = self._pending, self._origin
        if on and wanted is not None:
            self.out("/dd/learning", wanted[0], origin=origin)

    def on_midi(self, player, data: list[int]) -> None:
        """The press the player forwarded: bind it, save it, tell the player and the subscribers."""
        with self._lock:
            wanted, self._pending = self._pending, None
        if wanted is None or not is_press(data):
            return  # not armed here (e.g. a stale event): nothing to bind
        binding = binding_from_midi(data, *wanted)
        save_learned(self.path, binding)
        with self._lock:
            self._announce = (wanted[0], describe(binding))
        player.bind(binding)

    def on_bound(self) -> None:
        """The player maps the pad now: announce it (so a press right after /dd/learned works)."""
        with self._lock:
            announce, self._announce = self._announce, None
            origin, self._origin = self._origin, None
        if announce is not None:
            self.out("/dd/learned", *announce, origin=origin)
