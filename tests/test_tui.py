"""The terminal surface: pure rendering and key handling, then the real daemon in a real terminal (tmux)."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from deepdrummer_live.errors import CommandError
from deepdrummer_live.surfaces.tui import (
    LABEL_W,
    MIN_HEIGHT,
    MIN_WIDTH,
    handle_key,
    layout,
    render_lines,
    sparkline,
    step_col,
)

from daemon import free_udp_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent / "deepdrummer-live"


def snapshot(**over) -> dict:
    snap = {
        "loop": {"id": 12, "p_like": 0.54, "rows": [
            {"sample": "kick_01", "note": 36, "role": "kick", "steps": "x...x...x...x..."},
            {"sample": "808/clean/snare_with_a_long_name", "note": 38, "role": "snare", "steps": "....x.......x..."},
            {"sample": "closed_hat_01", "note": 42, "role": "closed_hat", "steps": "x.x.x.x.x.x.x.x."},
            {"sample": "conga_01", "note": 63, "role": "conga", "steps": "...x..x....x..x."}]},
        "likes": 3, "dislikes": 2, "mode": "explore", "fotf": False, "tempo": 120.0, "clock": "internal",
        "playing": True, "step": 5, "device": "cpu", "train_steps": 42,
        "losses": [0.7, 0.69, 0.6, 0.55, 0.5, 0.52, 0.4, 0.3], "last_error": "",
    }
    snap.update(over)
    return snap


# --- rendering ------------------------------------------------------------------------------------

def test_render_shows_every_panel():
    text = "\n".join(render_lines(snapshot(last_error="tempo 305 BPM out of range; use 20-300"), 100))
    for needle in ("loop #12", "P(like) 0.54", "likes 3", "dislikes 2", "mode explore", "4-on-the-floor off",
                   "120.0 BPM (internal clock)", "playing", "device cpu", "train steps 42",
                   "kick_01", "closed_hat", "conga", " 63 ", "error: tempo 305 BPM out of range",
                   "l like", "q quit", "0.300"):
        assert needle in text, needle
    assert "…" in text and "long_name" in text  # long names keep their distinctive end
    assert any(c in text for c in "▁▂▃▄▅▆▇█")


def test_grid_cells_and_playhead_line_up():
    lines = render_lines(snapshot(), 100)
    kick = next(ln for ln in lines if "kick_01" in ln)
    hits = [s for s in range(16) if kick[step_col(s)] == "■"]
    assert hits == [0, 4, 8, 12]
    assert all(kick[step_col(s)] == "·" for s in range(16) if s not in hits)
    marker = next(ln for ln in lines if "▲" in ln)
    assert marker.index("▲") == step_col(5)
    beats = next(ln for ln in lines if ln.strip().startswith("1 "))
    assert beats.index("1") == LABEL_W and beats.index("13") == step_col(12)


def test_stopped_has_no_playhead_and_ascii_fallback():
    lines = render_lines(snapshot(playing=False), 80, unicode=False)
    text = "\n".join(lines)
    assert "▲" not in text and "^" not in text and "stopped" in text
    assert all(ord(c) < 128 for c in text)
    kick = next(ln for ln in lines if "kick_01" in ln)
    assert kick[step_col(0)] == "x" and kick[step_col(1)] == "."


@pytest.mark.parametrize("width", [MIN_WIDTH, 80, 100, 200])
def test_lines_never_exceed_the_width(width):
    for line in render_lines(snapshot(last_error="x" * 300, losses=[float(i % 7) for i in range(500)],
                                      hearing=[3400, 10000]), width):
        assert len(line) <= width - 1


def test_hearing_shows_while_the_critic_learns_to_hear_the_kit():
    assert "hearing 34%" in "\n".join(render_lines(snapshot(hearing=[3400, 10000]), 120))
    assert "hearing" not in "\n".join(render_lines(snapshot(hearing=None), 120))  # a kit it hears already


def test_tiny_terminal_asks_for_more_room():
    assert "make the terminal bigger" in render_lines(snapshot(), 40)[0]
    lines, marks = layout(snapshot(), 100, MIN_HEIGHT - 1)
    assert lines[0].startswith("make the terminal bigger") and marks == []
    assert len(render_lines(snapshot(), 5)[0]) <= 4


def test_before_the_first_loop_and_before_training():
    text = "\n".join(render_lines(snapshot(loop=None, losses=[], playing=False, train_steps=0), 80))
    assert "waiting for the first loop" in text and "no training yet" in text
    resumed = "\n".join(render_lines(snapshot(losses=[], train_steps=1392), 80))
    assert "1392 steps before" in resumed


def test_experiment_progress_shows_on_the_mode_line():
    snap = snapshot()
    snap["experiment"] = {"participant": "p07", "phase": "2", "rated": 3, "of": 20}
    snap["mode"] = "blind"
    text = "\n".join(render_lines(snap, 100))
    assert "experiment p07: phase 2 3/20" in text and "mode blind" in text


def test_sparkline():
    assert sparkline([], 10) == ""
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8], 8) == "▁▂▃▄▅▆▇█"
    assert sparkline([0.5] * 4, 10) == "▅▅▅▅"
    assert len(sparkline(range(100), 10)) == 10
    assert sparkline([3, 1], 5, unicode=False) == "#_"


# --- keys -------------------------------------------------------------------------------------------

class FakeSession:
    def __init__(self):
        self.calls = []
        self.mode, self.fotf, self.tempo, self.playing = "explore", False, 120.0, False
        self.fail: Exception | None = None
        self.locked: set[int] = set()

    def _call(self, *call):
        if self.fail:
            raise self.fail
        self.calls.append(call)

    def rate(self, loop_id, liked):
        self._call("rate", loop_id, liked)
        return 7, 1, 2

    def next(self):
        self._call("next")

    def undo(self):
        self._call("undo")
        return 7, 0, 2

    def set_mode(self, mode):
        self._call("mode", mode)
        self.mode = mode

    def set_fotf(self, on):
        self._call("fotf", on)
        self.fotf = on

    def set_tempo(self, bpm):
        self._call("tempo", bpm)
        self.tempo = bpm

    def play(self):
        self._call("play")
        self.playing = True

    def stop_transport(self):
        self._call("stop")
        self.playing = False

    def save(self, name):
        self._call("save", name)

    def origin(self, origin):
        return contextlib.nullcontext()

    def snapshot(self):
        return {"locks": sorted(self.locked)}

    def set_lock(self, row, on):
        self._call("lock", row, on)
        (self.locked.add if on else self.locked.discard)(row)


def test_keys_call_the_session():
    s = FakeSession()
    for key in ["l", ord("d"), "n", "u", "f", "+", "-", "-", " ", " ", "s"]:
        assert handle_key(s, key).quit is False
    assert s.calls == [("rate", None, True), ("rate", None, False), ("next",), ("undo",), ("fotf", True),
                       ("tempo", 125.0), ("tempo", 120.0), ("tempo", 115.0), ("play",), ("stop",), ("save", None)]
    assert handle_key(s, "q").quit and handle_key(s, ord("q")).quit


def test_number_keys_toggle_row_locks():
    s = FakeSession()
    for key in ["1", "3", "1", ord("4")]:
        handle_key(s, key)
    assert s.calls == [("lock", 0, True), ("lock", 2, True), ("lock", 0, False), ("lock", 3, True)]
    assert s.locked == {2, 3}


def test_locked_rows_and_levels_show_in_the_grid():
    snap = snapshot()
    snap["loop"]["rows"][1].update(locked=True, levels="....9.......2...")
    lines = render_lines(snap, 100)
    snare = next(ln for ln in lines if "long_name" in ln)
    kick = next(ln for ln in lines if "kick_01" in ln)
    assert snare[0] == "L" and kick[0] == " "
    assert snare[step_col(4)] == "█" and snare[step_col(12)] == "▂"  # the level as a bar's height
    ascii_snare = next(ln for ln in render_lines(snap, 100, unicode=False) if "long_name" in ln)
    assert ascii_snare[step_col(4)] == "9" and ascii_snare[step_col(12)] == "2"


def test_mode_key_cycles_through_the_paper_modes():
    s = FakeSession()
    seen = []
    for _ in range(4):
        handle_key(s, "m")
        seen.append(s.mode)
    assert seen == ["good", "bad", "random", "explore"]


def test_tempo_keys_stop_at_the_limits():
    s = FakeSession()
    s.tempo = 298.0
    handle_key(s, "+")
    assert s.tempo == 300.0
    handle_key(s, "+")
    assert s.calls[-2:] == [("tempo", 300.0), ("tempo", 300.0)]
    s.tempo = 22.0
    handle_key(s, "-")
    assert s.calls[-1] == ("tempo", 20.0)


def test_session_errors_become_the_error_line_not_a_crash():
    s = FakeSession()
    s.fail = CommandError("nothing to undo: no rating left in this state dir")
    result = handle_key(s, "u")
    assert result.error.startswith("nothing to undo") and not result.quit
    text = "\n".join(layout(snapshot(), 100, error=result.error)[0])
    assert "error: nothing to undo" in text


def test_unknown_keys_do_nothing():
    s = FakeSession()
    for key in ["z", -1, 410, 0x1F600 + 0x110000]:
        assert handle_key(s, key).quit is False
    assert s.calls == []


# --- the real daemon in a real terminal ------------------------------------------------------------


class Tmux:
    def __init__(self):
        self.sock = f"ddtui{uuid.uuid4().hex[:8]}"  # a private server: never touches the user's tmux

    def __call__(self, *args) -> str:
        return subprocess.run(["tmux", "-L", self.sock, *args], check=True, capture_output=True,
                              text=True, timeout=10).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "dd")

    def wait_for(self, needle: str, timeout: float = 60.0) -> str:
        screen = [""]

        def shown() -> str | None:
            screen[0] = self.screen()
            return screen[0] if needle in screen[0] else None

        return wait_for(shown, timeout, lambda: f"{needle!r} on the screen; screen:\n{screen[0]}", interval=0.2)

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True, timeout=10)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux); "
                    "the terminal-surface test needs a real terminal")
def test_daemon_surface_in_tmux(tmp_path):
    state, rc_file = tmp_path / "state", tmp_path / "rc"
    cmd = (f"{EXE} run --state-dir {state} --osc-port {free_udp_port()} --midi-backend none --audio none "
           f"--web-port 0 --seed 1 2>{tmp_path / 'stderr'}; echo $? > {rc_file}")
    tmux = Tmux()
    try:
        tmux("new-session", "-d", "-s", "dd", "-x", "100", "-y", "30", "-c", str(ROOT), cmd)
        screen = tmux.wait_for("P(like)")
        assert " likes 0" in screen and "dislikes 0" in screen and "mode explore" in screen and "q quit" in screen
        tmux("send-keys", "-t", "dd", "l")
        tmux.wait_for(" likes 1")
        tmux("send-keys", "-t", "dd", "d")
        tmux.wait_for("dislikes 1")
        tmux("send-keys", "-t", "dd", "m")
        tmux.wait_for("mode good")
        tmux("send-keys", "-t", "dd", "u")  # takes back the dislike
        tmux.wait_for("dislikes 0")
        tmux("send-keys", "-t", "dd", "u", "u")  # the like, then nothing left: an error, not a crash
        screen = tmux.wait_for("error: nothing to undo")
        assert " likes 0" in screen and "dislikes 0" in screen
        tmux("resize-window", "-t", "dd", "-x", "40", "-y", "10")
        tmux.wait_for("make the terminal bigger")
        tmux("resize-window", "-t", "dd", "-x", "100", "-y", "30")
        tmux.wait_for("P(like)")
        tmux("send-keys", "-t", "dd", "q")
        wait_for(lambda: rc_file.exists() and rc_file.read_text().strip(), 60, "the daemon's exit status (it quit)",
                 interval=0.2)
        assert rc_file.read_text().strip() == "0", (tmp_path / "stderr").read_text()[-2000:]
    finally:
        tmux.kill()
    db = sqlite3.connect(f"file:{state / 'state.sqlite'}?mode=ro", uri=True)
    try:
        ratings = db.execute("SELECT rating, undone FROM ratings ORDER BY seq").fetchall()
        mode = db.execute("SELECT value FROM meta WHERE key = 'mode'").fetchone()
    finally:
        db.close()
    assert ratings == [(1, 1), (0, 1)]  # both landed, both taken back
    assert mode == ("good",)


def test_a_phrase_shows_the_bar_that_plays_with_its_meters_beats():
    """8 rows x 2 bars of 7/8: the bar of the playhead, 14 steps, beats before steps 4 and 8."""
    rows = [{"sample": f"s{r}", "role": "kick", "note": 36, "steps": ("x" + "." * 13) + ("." * 13 + "x"),
             "levels": ("9" + "." * 13) + ("." * 13 + "3")} for r in range(8)]
    snap = {"loop": {"id": 3, "p_like": 0.5, "rows": rows, "steps_per_bar": 14, "beats": [0, 4, 8], "meter": "7/8",
                     "bars": 2}, "playing": True, "step": 20, "likes": 0, "dislikes": 0, "mode": "explore"}
    lines, _ = layout(snap, 120)
    head = next(ln for ln in lines if "bar 2/2 of 7/8" in ln)
    assert head.index("5") == step_col(4, (0, 4, 8)) and head.index("9") == step_col(8, (0, 4, 8))
    grid = [ln for ln in lines if ln.lstrip().startswith("s")]
    assert len(grid) == 8
    cells = [grid[0][step_col(s, (0, 4, 8))] for s in range(14)]
    assert cells.count("·") == 13 and cells[13] != "·"  # bar 2: its one hit on its last step
