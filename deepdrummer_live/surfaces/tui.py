"""The terminal control surface: a curses view of `Session.snapshot()` plus single-key commands.

Rendering is pure (`layout`/`render_lines` turn a snapshot into text lines), key handling is a
plain function (`handle_key`), and only `run_tui` touches the terminal, so the first two are
tested without a tty and the last one in a real terminal (tmux).
"""

from __future__ import annotations

import curses
import locale
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from deepdrummer_live import commands
from deepdrummer_live.errors import DeepDrummerError
from deepdrummer_live.surfaces.qr import qr_lines
from deepdrummer_live.surfaces.taste import taste_line
from deepdrummer_live.vocab import MAX_ROWS

log = logging.getLogger(__name__)

FPS = 15  # redraws per second: smooth playhead at 300 BPM (8 steps/s) without burning a core
MIN_WIDTH = 70
MIN_HEIGHT = 18
NAME_W = 14
ROLE_W = 10
LABEL_W = 2 + NAME_W + 1 + ROLE_W + 1 + 3 + 2  # indent, name, role, note, gap
TEMPO_STEP = 5.0
SPARK_UNICODE = "▁▂▃▄▅▆▇█"
SPARK_ASCII = "_.-:=+*#"

HELP = [("l", "like"), ("d", "dislike"), ("n", "next"), ("u", "undo"), ("m", "mode"), ("f", "4/4 kick"),
        ("1-4", "lock row"), ("+/-", "tempo"), ("space", "play"), ("s", "save"), ("v", "vary"), ("i", "fill"),
        ("p", "profile"), ("q", "quit")]
LEVEL_BLOCKS = "▁▂▃▄▅▅▆▇█"  # a hit's level 1-9 as a bar's height


# --- pure rendering -----------------------------------------------------------------------------

def sparkline(values, width: int, unicode: bool = True) -> str:
    """The last `width` values as block characters scaled between their min and max."""
    chars = SPARK_UNICODE if unicode else SPARK_ASCII
    vals = [float(v) for v in values][-width:] if width > 0 else []
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    span = hi - lo
    if span <= 0:  # flat: draw mid-height so a constant loss is still visible
        return chars[len(chars) // 2] * len(vals)
    return "".join(chars[min(len(chars) - 1, int((v - lo) / span * len(chars)))] for v in vals)


FOUR_FOUR_BEATS = (0, 4, 8, 12)


def step_col(step: int, beats=FOUR_FOUR_BEATS) -> int:
    """Column of step `step` (within the bar shown) in a grid row: two characters per step, one extra
    space before each beat of the meter."""
    return LABEL_W + 2 * step + sum(1 for b in beats if 0 < b <= step)


def fit(text: str, width: int, unicode: bool = True) -> str:
    """Cut to width; a long sample name keeps its end (the distinctive part: 'kick01', not '808/clean/')."""
    if len(text) <= width:
        return text.ljust(width)
    return ("…" if unicode else "~") + text[-(width - 1):] if width > 1 else text[:width]


def grid_cells(steps: str, unicode: bool = True, levels: str | None = None, beats=FOUR_FOUR_BEATS) -> str:
    """A row's steps (one bar) as cells, a space before each beat; with `levels`, a hit shows its level
    (a block's height, or 1-9)."""
    hit, rest = ("■", "·") if unicode else ("x", ".")
    cells = []
    for i, c in enumerate(steps):
        if i and i in beats:
            cells.append(" ")
        if c != "x":
            cell = rest
        elif levels and levels[i] in "123456789":
            cell = LEVEL_BLOCKS[int(levels[i]) - 1] if unicode else levels[i]
        else:
            cell = hit
        cells.append(cell + " ")
    return "".join(cells).rstrip()


def wrap_help(width: int) -> list[str]:
    lines, line = [], " "
    for key, what in HELP:
        item = f"{key} {what}"
        if len(line) + len(item) + 2 > width and line.strip():
            lines.append(line.rstrip())
            line = " "
        line += item + "  "
    lines.append(line.rstrip())
    return lines


@dataclass
class Mark:
    """A span to draw with an attribute: line index, column, length, style name."""
    line: int
    col: int
    length: int
    style: str


def layout(snap: dict, width: int, height: int | None = None, *, unicode: bool = True,
           message: str = "", error: str | None = None) -> tuple[list[str], list[Mark]]:
    """Text lines (each at most width-1 wide) and style marks for one frame.

    `error` overrides the snapshot's last_error (the surface shows the newest of the two);
    `message` is a transient note ("saving loop #4").
    """
    if width < MIN_WIDTH or (height is not None and height < MIN_HEIGHT):
        have = f"{width}x{height}" if height is not None else f"{width} columns"
        text = f"make the terminal bigger: need {MIN_WIDTH}x{MIN_HEIGHT}, have {have} (q quits)"
        return [text[:max(1, width - 1)]], []
    lines: list[str] = []
    marks: list[Mark] = []
    playing = bool(snap.get("playing"))
    dot = ("▶" if unicode else ">") if playing else ("■" if unicode else "#")
    right = (f"{dot} {'playing' if playing else 'stopped'}   "
             f"{snap.get('tempo', 0):.1f} BPM ({snap.get('clock', '?')} clock)")
    title = " DeepDrummer Live"
    swing = f"swing {snap['swing']:.2f}   " if snap.get("swing") else ""
    if len(title) + len(swing) + len(right) >= width - 1:
        swing = ""  # shown only where it fits
    lines.append(title + (swing + right).rjust(width - 1 - len(title)))
    marks.append(Mark(0, 1, len(title) - 1, "title"))
    if playing:
        marks.append(Mark(0, len(lines[0]) - len(right), 9, "like"))
    loop = snap.get("loop")
    likes, dislikes = snap.get("likes", 0), snap.get("dislikes", 0)
    if loop is None:
        lines.append(f" waiting for the first loop...   likes {likes}   dislikes {dislikes}")
    else:
        p = float(loop.get("p_like", 0.0))
        head = f" loop #{loop.get('id')}   P(like) {p:.2f} "
        tail = f"   likes {likes}   dislikes {dislikes}"
        bar_w = max(5, min(20, width - 1 - len(head) - len(tail)))
        filled = max(0, min(bar_w, round(p * bar_w)))
        bar = ("█" * filled + "░" * (bar_w - filled)) if unicode else ("#" * filled + "-" * (bar_w - filled))
        lines.append(head + bar + tail)
        marks.append(Mark(1, len(head), filled, "like"))
        marks.append(Mark(1, len(head) + bar_w + 3, len(f"likes {likes}"), "like"))
        marks.append(Mark(1, len(head) + bar_w + len(tail) - len(f"dislikes {dislikes}"),
                          len(f"dislikes {dislikes}"), "dislike"))
    lines.append(f" profile {snap.get('profile', '?')}   mode {snap.get('mode', '?')}"
                 f"   4-on-the-floor {'on' if snap.get('fotf') else 'off'}"
                 f"   device {snap.get('device', '?')}   train steps {snap.get('train_steps', 0)}")
    hearing = snap.get("hearing")
    if hearing:  # a kit without a hearing critic: the critic still learns to hear it, in idle time
        lines[-1] += f"   hearing {hearing_percent(hearing)}"
    exp = snap.get("experiment")
    if exp:  # `deepdrummer-live experiment`: where the participant is in the plan
        lines[-1] = (f" experiment {exp['participant']}: phase {exp['phase']} {exp['rated']}/{exp['of']}   "
                     + lines[-1].lstrip())
    lines.append("")
    rows = loop.get("rows", []) if loop else []
    n_steps = max((len(r.get("steps", "")) for r in rows), default=16)
    step = int(snap.get("step", 0)) % max(1, n_steps)
    # A phrase shows the bar that plays (contract v1.2): its steps, with its meter's beats
    spb = int(loop.get("steps_per_bar", n_steps)) if loop else 16
    beats = tuple(loop.get("beats", FOUR_FOUR_BEATS)) if loop else FOUR_FOUR_BEATS
    bars = max(1, n_steps // max(spb, 1))
    bar = step // max(spb, 1) if playing else 0
    first, step = bar * spb, step % max(spb, 1)
    # each beat's step number over its first step (1 5 9 13 in 4/4)
    heads = [" " * LABEL_W] + [f"{b + 1:<{2 * ((beats + (spb,))[n + 1] - b) + 1}}" for n, b in enumerate(beats)]
    lines.append("".join(heads).rstrip() + (f"   bar {bar + 1}/{bars} of {loop.get('meter', '4/4')}"
                                            if loop and bars > 1 else ""))
    for r in rows:
        name = fit(str(r.get("sample", "?")), NAME_W, unicode)
        role = fit(str(r.get("role", "?")), ROLE_W, unicode)
        label = f"{'L' if r.get('locked') else ' '} {name} {role} {r.get('note', 0):>3}  "
        steps = str(r.get("steps", ""))[first:first + spb]
        levels = r.get("levels")
        lines.append(label + grid_cells(steps, unicode, levels[first:first + spb] if levels else None, beats))
        if r.get("locked"):
            marks.append(Mark(len(lines) - 1, 0, 1, "title"))
        marks.extend(Mark(len(lines) - 1, step_col(i, beats), 1, "hit") for i, c in enumerate(steps) if c == "x")
        if playing:
            marks.append(Mark(len(lines) - 1, step_col(step, beats), 1, "playhead"))
    for _ in range(4 - len(rows)):
        lines.append("")
    if playing:
        lines.append(" " * step_col(step, beats) + ("▲" if unicode else "^"))
    else:
        lines.append("")
    taste = snap.get("taste")
    if taste is not None:  # the critic that reads loops: what it prefers and avoids, and how sure
        lines.append(f" taste {taste_line(taste, max(20, width - 7))}")
    losses = snap.get("losses") or []
    if losses:
        prefix = " loss "
        suffix = f"  {float(losses[-1]):.3f} (step {snap.get('train_steps', 0)})"
        spark = sparkline(losses, width - 1 - len(prefix) - len(suffix), unicode)
        lines.append(prefix + spark + suffix)
    elif snap.get("train_steps"):
        lines.append(f" loss  (none since this run started; {snap.get('train_steps')} steps before; rate to train)")
    else:
        lines.append(" loss  (no training yet: rate a few loops)")
    lines.append("")
    err = snap.get("last_error", "") if error is None else error
    if err:
        lines.append(f" error: {err}")
        marks.append(Mark(len(lines) - 1, 1, len(lines[-1]) - 1, "error"))
    else:
        lines.append(f" {message}" if message else "")
    lines.append("")
    help_start = len(lines)
    lines.extend(wrap_help(width - 1))
    for i in range(help_start, len(lines)):
        marks.append(Mark(i, 0, len(lines[i]), "help"))
    lines = [ln[:width - 1] for ln in lines]
    return lines, [m for m in marks if m.col < width - 1]


def with_page_url(lines: list[str], url: str | None, qr: list[str], width: int,
                  height: int | None = None) -> list[str]:
    """The frame plus the rating page's address and, where the terminal has room, its QR code (beside
    the frame, else below it), so a phone opens the page by scanning it."""
    if not url:
        return lines
    out = lines + [f" rating page: {url}"[:width - 1]]
    if not qr:
        return out
    body = out[1:]  # the title line spans the full width: the code goes beside the lines under it
    left = max((len(ln.rstrip()) for ln in body), default=0) + 2
    if left + len(qr[0]) <= width - 1 and (height is None or 1 + len(qr) <= height):
        body += [""] * max(0, len(qr) - len(body))
        return [out[0]] + [ln.rstrip().ljust(left) + qr[i] if i < len(qr) else ln for i, ln in enumerate(body)]
    if (height is None or len(out) + len(qr) <= height) and len(qr[0]) <= width - 1:
        return out + qr
    return out + [f" (a terminal of {left + len(qr[0]) + 1} columns or {len(out) + len(qr)} lines "
                  f"shows a QR code of it)"[:width - 1]]


def hearing_percent(hearing) -> str:
    """`[learnt, of]` hearing steps -> '34%'."""
    learnt, of = hearing
    return f"{min(99, int(100 * learnt / max(1, of)))}%"


def render_lines(snapshot: dict, width: int, unicode: bool = True) -> list[str]:
    """The frame for `snapshot` as text lines at most width-1 characters wide."""
    return layout(snapshot, width, unicode=unicode)[0]


# --- keys -----------------------------------------------------------------------------------------

@dataclass
class KeyResult:
    quit: bool = False
    message: str = ""  # a note to show ("saving loop #3")
    error: str = ""    # a DeepDrummerError's message


def _key_char(key) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, int) and 0 <= key < 0x110000:
        return chr(key)
    return ""


# Key -> (command, args, what to say afterwards). The commands come from the one table
# (commands.py); the terminal only chooses keys for them.
KEYS: dict[str, tuple[str, tuple, Callable[[object, object], str]]] = {
    "l": ("like", (), lambda r, s: f"liked loop #{r[0]} ({r[1]} likes)"),
    "d": ("dislike", (), lambda r, s: f"disliked loop #{r[0]} ({r[2]} dislikes)"),
    "n": ("next", (), lambda r, s: "next loop"),
    "u": ("undo", (), lambda r, s: f"took back the last rating (loop #{r[0]})"),
    "m": ("mode_cycle", (), lambda r, s: f"mode {s.mode}"),
    "f": ("fotf_toggle", (), lambda r, s: f"4-on-the-floor {'on' if s.fotf else 'off'}"),
    "+": ("tempo_nudge", (TEMPO_STEP,), lambda r, s: f"tempo {s.tempo:g} BPM"),
    "=": ("tempo_nudge", (TEMPO_STEP,), lambda r, s: f"tempo {s.tempo:g} BPM"),
    "-": ("tempo_nudge", (-TEMPO_STEP,), lambda r, s: f"tempo {s.tempo:g} BPM"),
    "_": ("tempo_nudge", (-TEMPO_STEP,), lambda r, s: f"tempo {s.tempo:g} BPM"),
    " ": ("play_toggle", (), lambda r, s: "playing" if s.playing else "stopped"),
    "s": ("save", (), lambda r, s: "saving the current loop to the library"),
    "v": ("vary", (), lambda r, s: "a variation of this loop comes next"),
    "i": ("fill", (), lambda r, s: "a fill at the next bar line"),
    "p": ("profile_next", (), lambda r, s: f"taste profile {s.profile}"),
    **{str(row + 1): ("lock_toggle", (row,),
                      lambda r, s, row=row: f"row {row + 1} {'locked' if row in s.locked else 'unlocked'}")
       for row in range(MAX_ROWS)},
}


# MIDI learn (`L`, then one of these): the action and row to learn (player/midilearn.py)
LEARN_KEYS = {"l": ("like",), "d": ("dislike",), "n": ("next",), "u": ("undo",), "s": ("save",), "m": ("mode",),
              "f": ("fotf",), **{str(r + 1): ("lock", r) for r in range(MAX_ROWS)}}


def handle_key(session, key) -> KeyResult:
    """Run the command bound to `key` (a curses key code or a one-character string)."""
    c = _key_char(key)
    if c in ("q", "Q"):
        return KeyResult(quit=True)
    learn = getattr(session, "pad_learning", None)
    if learn is not None and learn.choosing:  # after `L`: this key names the action to learn
        learn.choosing = False
        if c not in LEARN_KEYS:
            return KeyResult(error=f"MIDI learn: no action on key {c!r}; cancelled")
        try:
            commands.execute(session, "learn", LEARN_KEYS[c])
        except DeepDrummerError as exc:
            return KeyResult(error=str(exc))
        return KeyResult(message=f"MIDI learn: press the pad for {LEARN_KEYS[c][0]}")
    if c == "L" and learn is not None:
        learn.choosing = True
        return KeyResult(message="MIDI learn: press l d n u s m f or 1-4 for the action")
    bound = KEYS.get(c)
    if bound is None:
        return KeyResult()
    name, args, say = bound
    try:
        result = commands.execute(session, name, args)
    except DeepDrummerError as exc:
        return KeyResult(error=str(exc))
    return KeyResult(message=say(result, session))


# --- the terminal ------------------------------------------------------------------------------------

class _LastWarning(logging.Handler):
    """Keeps the newest warning/error log line, shown on the surface instead of scribbling on it."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.text = ""
        self.at = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        self.text = record.getMessage()
        self.at = time.monotonic()


def _is_console_handler(h: logging.Handler) -> bool:
    return (isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
            and getattr(h, "stream", None) in (sys.stderr, sys.stdout))


def _styles() -> dict[str, int]:
    styles = {"title": curses.A_BOLD, "playhead": curses.A_REVERSE, "error": curses.A_BOLD,
              "like": curses.A_NORMAL, "dislike": curses.A_NORMAL, "help": curses.A_DIM,
              "hit": curses.A_BOLD}
    if curses.has_colors():
        try:
            curses.use_default_colors()
            bg = -1
        except curses.error:
            bg = curses.COLOR_BLACK
        for i, color in enumerate((curses.COLOR_RED, curses.COLOR_GREEN, curses.COLOR_CYAN), start=1):
            curses.init_pair(i, color, bg)
        styles.update(error=curses.color_pair(1) | curses.A_BOLD, like=curses.color_pair(2),
                      dislike=curses.color_pair(1), title=curses.color_pair(3) | curses.A_BOLD,
                      hit=curses.color_pair(2) | curses.A_BOLD)
    return styles


def _draw(scr, lines: list[str], marks: list[Mark], styles: dict[str, int]) -> None:
    h, w = scr.getmaxyx()
    scr.erase()
    for y, text in enumerate(lines[:h]):
        try:
            scr.addstr(y, 0, text[:max(0, w - 1)])
        except curses.error:
            continue  # a cell the terminal cannot show (resize race): the next frame redraws it
    for m in marks:
        if m.line < h and m.col < w - 1 and m.length > 0:
            try:
                scr.chgat(m.line, m.col, min(m.length, w - 1 - m.col), styles.get(m.style, 0))
            except curses.error:
                continue
    scr.refresh()


def _loop(scr, session, stop: threading.Event, warnings: _LastWarning, web_url: str | None = None) -> None:
    try:
        curses.curs_set(0)
    except curses.error:
        log.debug("terminal cannot hide the cursor")
    scr.timeout(int(1000 / FPS))
    scr.keypad(True)
    styles = _styles()
    unicode = (locale.getpreferredencoding(False) or "").lower().replace("-", "") == "utf8"
    message, error, error_at, seen_error = "", "", 0.0, None
    page_qr = qr_lines(web_url) if web_url and unicode else []
    frame = 0
    while not stop.is_set():
        frame += 1
        if frame % (FPS * 5) == 0:
            scr.redrawwin()  # repaint everything now and then: a child process may have written to the tty
        snap = session.snapshot()
        if snap.get("last_error") != seen_error:  # a new session error is newer than any key error
            seen_error = snap.get("last_error")
            if seen_error:
                error, error_at = seen_error, time.monotonic()
        if warnings.at > error_at and warnings.text and warnings.text != error:
            error, error_at = warnings.text, warnings.at
        h, w = scr.getmaxyx()
        lines, marks = layout(snap, w, h, unicode=unicode, message=message, error=error)
        lines = with_page_url(lines, web_url, page_qr, w, h)
        _draw(scr, lines, marks, styles)
        key = scr.getch()
        if key == -1:
            continue
        if key == curses.KEY_RESIZE:
            curses.update_lines_cols()
            scr.clear()  # full repaint: the old frame's cells are stale after a resize
            continue
        result = handle_key(session, key)
        if result.quit:
            return
        if result.error:
            error, error_at, message = result.error, time.monotonic(), ""
        elif result.message:
            message, error = result.message, ""


def run_tui(session, stop: threading.Event, web_url: str | None = None) -> None:
    """Show the surface until the user presses q (then sets `stop`) or `stop` is set elsewhere."""
    root = logging.getLogger()
    console = [h for h in root.handlers if _is_console_handler(h)]
    warnings = _LastWarning()
    # Log lines on stderr would tear the curses screen: mute them while it is up (daemon.log keeps all).
    for h in console:
        root.removeHandler(h)
    root.addHandler(warnings)
    try:
        try:
            locale.setlocale(locale.LC_CTYPE, "")  # ncurses draws multibyte characters only with a locale
        except locale.Error as exc:
            log.warning("locale from LANG/LC_* unusable (%s): drawing ASCII only", exc)
        # Exported LINES/COLUMNS (pytest, some shells) would pin ncurses to a stale size: drop them so
        # it asks the tty, before and after every resize.
        for name in ("LINES", "COLUMNS"):
            os.environ.pop(name, None)
        curses.wrapper(_loop, session, stop, warnings, web_url)
    except curses.error as exc:
        for h in console:
            root.addHandler(h)
        console = []
        log.warning("terminal surface unavailable (%s; TERM=%s); running without it, Ctrl-C stops",
                    exc, os.environ.get("TERM"))
        stop.wait()
    finally:
        root.removeHandler(warnings)
        for h in console:
            root.addHandler(h)
    stop.set()
