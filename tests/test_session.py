"""The session in process: a real learner and store, an injected playback that records what it is told.

Covers what every surface relies on through the command table: replies reach the origin, a rating
while playing switches on the transport's bar line, settings resume, an explicit tempo wins, and a
stop writes every queued library file.
"""

from __future__ import annotations

import threading

import pytest
import torch

from deepdrummer_live import commands
from deepdrummer_live.errors import CommandError
from deepdrummer_live.learn import checkpoint
from deepdrummer_live.learn.learner import Learner
from deepdrummer_live.player import controller
from deepdrummer_live.session import Session
from deepdrummer_live.storage import library
from deepdrummer_live.storage.store import Store
from deepdrummer_live.surfaces import osc, tui

from daemon import wait_for


class RecordingPlayback:
    """A playback whose bar lines come when the test says so."""

    def __init__(self):
        self.loops: list[tuple[int, bool]] = []  # (loop_id, at_bar)
        self.calls: list[tuple] = []
        self.on_event = None

    def set_loop(self, loop_id, rows, audio, at_bar, swing=0.0, steps_per_bar=16, switch_at="phrase"):
        self.loops.append((loop_id, at_bar))
        if not at_bar:
            self.on_event({"type": "switched", "loop_id": loop_id})

    def bar_line(self):
        self.on_event({"type": "switched", "loop_id": self.loops[-1][0]})

    def play(self):
        self.calls.append(("play",))
        self.on_event({"type": "transport", "playing": True})

    def stop(self):
        self.calls.append(("stop",))
        self.on_event({"type": "transport", "playing": False})

    def set_tempo(self, bpm):
        self.calls.append(("tempo", bpm))

    def close(self):
        pass



class Harness:
    def __init__(self, kit, state_dir, tempo=None):
        torch.set_num_threads(1)
        self.learner = Learner(kit, torch.device("cpu"), seed=5, chains=8, iters=1)
        self.learner.hearing_done = True  # a unit test need not wait for the hearing pretraining
        self.store = Store(state_dir)
        self.session = Session(self.learner, self.store, tempo=tempo)
        self.playback = RecordingPlayback()
        self.playback.on_event = self.session.on_player_event
        self.session.attach_playback(self.playback)
        self.sent: list[tuple[str, tuple, object]] = []
        self.lock = threading.Lock()
        self.session.add_listener(lambda a, args, origin: self.sent.append((a, args, origin)))

    def messages(self, address):
        return [(args, origin) for a, args, origin in list(self.sent) if a == address]

    def start(self):
        self.session.start()
        wait_for(lambda: self.session.current is not None, what="the first loop")
        return self

    def close(self):
        self.session.shutdown()
        self.store.close()


@pytest.fixture
def harness(kit, tmp_path):
    h = Harness(kit, tmp_path).start()
    yield h
    h.close()


def test_replies_reach_the_origin_and_loops_reach_everyone(harness):
    s = harness.session
    first = s.current.id
    loop_id, likes, dislikes = commands.execute(s, "like", (), origin="client-a")
    assert (loop_id, likes, dislikes) == (first, 1, 0)
    assert harness.messages("/dd/rated") == [((first, "like", 1, 0), "client-a")]
    wait_for(lambda: harness.messages("/dd/loop")[-1][0][0] != first, what="the next loop")
    assert all(origin is None for _, origin in harness.messages("/dd/loop"))  # to subscribers only
    saved = wait_for(lambda: harness.messages("/dd/saved"), what="the liked loop's files")
    assert saved[0][0][0] == first and saved[0][1] == "client-a"  # written later, still answered to a
    commands.execute(s, "status", (), origin="client-b")
    assert harness.messages("/dd/status")[-1] == ((1, 0, s.current.id, "explore", "cpu", s.learner.trainer.steps),
                                                  "client-b")


def test_a_rating_while_playing_switches_on_the_bar_line(harness):
    s = harness.session
    commands.execute(s, "play")
    first = s.current.id
    commands.execute(s, "dislike")
    pending = wait_for(lambda: s.pending, what="a loop waiting for the bar line")
    assert harness.playback.loops[-1] == (pending.id, True)
    assert s.current.id == first  # still playing the rated loop until the bar line
    commands.execute(s, "dislike", (first,))  # rating it again does not queue a second switch
    assert s.pending is pending
    harness.playback.bar_line()
    assert s.current.id == pending.id and s.pending is None


def test_a_waiting_performer_is_served_from_a_smaller_search(harness):
    """Nothing buffered fits when the next loop is asked for: the search that serves it runs on a
    share of the chains (its first scoring cannot be cut short); the buffer refills at full size."""
    from deepdrummer_live.worker import HURRY_CHAINS_DIVISOR

    chains, real = [], harness.learner.propose

    def spy(*args, **kwargs):
        if kwargs.get("mode") == "good":
            chains.append(kwargs.get("chains"))
        return real(*args, **kwargs)

    harness.learner.propose = spy
    first = harness.session.current.id
    with harness.session.mutex:  # the worker starts no `good` search before the performer waits for it
        harness.session.set_mode("good")  # a new mode: nothing buffered fits
        harness.session.next()
    wait_for(lambda: harness.session.current.id != first and len(chains) >= 2, what="the next loop and a refill")
    assert chains[0] == max(1, harness.learner.chains // HURRY_CHAINS_DIVISOR)
    assert None in chains[1:]  # refills keep the full budget


def test_bad_arguments_change_nothing(harness):
    s = harness.session
    before = (s.mode, s.fotf, s.tempo, s.likes, s.dislikes)
    for name, args in [("mode", ("loud",)), ("tempo", (301,)), ("fotf", (2,)), ("like", (1.5,)),
                       ("like", (999_999,)), ("save", ("../x",)), ("tempo", ("fast",)), ("next", (1,))]:
        with pytest.raises(CommandError):
            commands.execute(s, name, args)
    assert (s.mode, s.fotf, s.tempo, s.likes, s.dislikes) == before
    with pytest.raises(CommandError, match=r"unknown command 'dance'"):
        commands.execute(s, "dance")


def test_cycles_and_nudges_are_commands(harness):
    s = harness.session
    seen = [commands.execute(s, "mode_cycle") or s.mode for _ in range(4)]
    assert seen == ["good", "bad", "random", "explore"]
    commands.execute(s, "tempo", (298,))
    commands.execute(s, "tempo_nudge", (5,))
    assert s.tempo == 300.0
    commands.execute(s, "fotf_toggle")
    assert s.fotf is True


def test_settings_resume_and_an_explicit_tempo_wins(kit, tmp_path):
    h = Harness(kit, tmp_path).start()
    commands.execute(h.session, "mode", ("good",))
    commands.execute(h.session, "fotf", (1,))
    commands.execute(h.session, "tempo", (90,))
    h.close()
    h = Harness(kit, tmp_path)
    assert (h.session.mode, h.session.fotf, h.session.tempo) == ("good", True, 90.0)
    h.store.close()
    h = Harness(kit, tmp_path, tempo=120.0)  # bug: --tempo 120 used to lose to the resumed tempo
    assert h.session.tempo == 120.0
    h.store.close()


def test_stop_writes_every_queued_library_file(kit, tmp_path):
    h = Harness(kit, tmp_path).start()
    liked = h.session.current.id
    with h.session.mutex:  # hold the worker back so the files are still queued when stop() comes
        h.session.rate(None, True)
        assert h.session.worker.queued("library") == 1
    h.close()
    assert library.has_files(h.store.library, liked)


def test_a_kit_without_a_hearing_critic_keeps_learning_to_hear_in_idle_time(kit, tmp_path, monkeypatch):
    """The short hearing pass at start, then the long one in the worker's idle time: the checkpoint
    says how far it went and proposals are remade (the refits: test_critics.py)."""
    import dataclasses

    from deepdrummer_live.learn import learner as learner_module
    from deepdrummer_live.learn.critic import LEAN_CONFIG

    monkeypatch.setattr(learner_module, "HEARING_REFIT_EVERY", 60)
    h = Harness(kit, tmp_path)
    config = dataclasses.replace(LEAN_CONFIG, hearing_pass_steps=20, hearing_pass_loops=64, shipped_hearing_steps=140)
    h.learner = h.session.learner = h.session.worker.learner = Learner(kit, torch.device("cpu"), seed=5,
                                                                        config=config, chains=8, iters=1)
    assert h.learner.needs_hearing()
    assert h.session.snapshot()["hearing"] == (0, 140)  # what the terminal and the page show
    h.start()
    try:
        for liked in (True, False):
            rated = h.session.current.id
            commands.execute(h.session, "like" if liked else "dislike")
            wait_for(lambda r=rated: h.session.current.id != r, what="the next loop")
        wait_for(lambda: h.learner.hearing_steps == 140, 120, "the long hearing pass")
        assert h.session.snapshot()["hearing"] is None  # the surfaces stop showing it
        wait_for(lambda: h.session.worker.buffer and all(p.critic_version == h.learner.version
                                                         for p in h.session.worker.buffer), 60,
                 "proposals of the critic as it hears now")
        # the worker writes the checkpoint just after the pass: complete hearing, so it names no steps
        # left to learn (a checkpoint during the pass says how far it went)
        saved = wait_for(lambda: (lambda st: st if st["hearing_done"] and "hearing_steps" not in st else None)(
            torch.load(h.store.checkpoint_path, weights_only=True)), 60, "the checkpoint after the pass")
        assert saved["hearing_done"]
        resumed = Learner(kit, torch.device("cpu"), seed=6, config=config, chains=8, iters=1)
        assert checkpoint.load(resumed, h.store) and resumed.long_hearing_left() == 0  # no pass again
        commands.execute(h.session, "like")  # the session goes on as before
        assert h.messages("/dd/rated")[-1][0][1:] == ("like", 2, 1)
    finally:
        h.close()


def test_every_surface_reaches_commands_only_through_the_table():
    """OSC addresses, terminal keys and controller actions all name commands of the one table."""
    assert {c.address for c in commands.COMMANDS.values()} <= osc.addresses()
    assert {name for name, _, _ in tui.KEYS.values()} <= set(commands.COMMANDS)
    for name in ("generic", "akai-mpd218", "novation-launchpad", "korg-nanokontrol2"):
        assert {b.action for b in controller.load_mapping(name).bindings} <= set(commands.COMMANDS)


def test_the_table_is_documented():
    """docs/protocol.md names every command's OSC address; `deepdrummer-live commands` lists them all."""
    import subprocess
    import sys
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    missing = [c.address for c in commands.COMMANDS.values() if f"`{c.address}" not in doc]
    assert not missing, f"docs/protocol.md does not document {missing}"
    out = subprocess.run([sys.executable, "-m", "deepdrummer_live.cli.main", "commands"], capture_output=True,
                         text=True, check=True).stdout
    assert [line.split()[0] for line in out.splitlines()] == [c.address for c in commands.COMMANDS.values()]


def test_virtual_playback_switches_on_the_bar_line_of_its_clock():
    """Bar lines come from the injected clock: at 120 BPM a bar is 2 s; a loop set mid-bar waits for it."""
    from deepdrummer_live.playback import VirtualPlayback

    t = [100.0]
    events = []
    vt = VirtualPlayback(120.0, events.append, now=lambda: t[0])
    vt.play()
    t[0] = 100.5
    assert vt.current_step() == 4  # a 16th is 0.125 s
    vt.set_loop(7, [], None, at_bar=True)
    assert vt._timer.interval == pytest.approx(1.5)  # waits for 102.0, not a fixed time
    vt.close()
    vt.set_loop(8, [], None, at_bar=False)  # stopped or not at a bar: at once
    assert events[-1] == {"type": "switched", "loop_id": 8}
