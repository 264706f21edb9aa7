"""MIDI learn: /dd/learn arms it, the next pad press is bound, saved to <state-dir>/controller.toml,
and still works after a restart. End to end over a real JACK MIDI port; the file format alone too."""

from __future__ import annotations

import contextlib

import pytest

from deepdrummer_live.errors import CommandError
from deepdrummer_live.player import controller as ctl
from deepdrummer_live.player import midilearn

from daemon import Daemon, OscClient
from jack_midi import jack_port


def test_learned_file_reads_back_and_lays_over_the_controller_mapping(tmp_path):
    path = tmp_path / midilearn.LEARNED_FILE
    assert midilearn.load_learned(path) is None
    midilearn.save_learned(path, midilearn.binding_from_midi([0x99, 60, 100], "like", None))
    midilearn.save_learned(path, midilearn.binding_from_midi([0xB0, 20, 127], "lock", 2))
    midilearn.save_learned(path, midilearn.binding_from_midi([0x99, 60, 90], "next", None))  # re-learnt pad
    learned = ctl.load_mapping(path)  # the same format as the shipped mappings
    assert learned.handle([0x99, 60, 100]) == {"type": "control", "command": "next", "args": []}
    assert learned.handle([0xB0, 20, 127]) == {"type": "control", "command": "lock_toggle", "args": [2]}
    assert learned.handle([0x90, 60, 100]) is None  # learnt on channel 10 only
    both = midilearn.overlay(ctl.load_mapping("generic"), learned)
    assert both.handle([0x90, 36, 100])["command"] == "like"  # the generic mapping still works
    assert both.handle([0x99, 60, 100])["command"] == "next"
    assert sorted(map(midilearn.describe, learned.bindings)) == ["cc 20 ch 1", "note 60 ch 10"]


@pytest.mark.parametrize("action,row,match", [
    ("clap", None, "cannot learn 'clap'; use one of like"),
    ("lock", None, "learning lock needs the row, 0-7"),
    ("like", 2, "'like' takes no row"),
])
def test_bad_learn_requests_name_the_fix(action, row, match):
    with pytest.raises(CommandError, match=match):
        midilearn.target(action, row)


def test_learn_a_pad_then_it_rates_also_after_a_restart(tmp_path, jack_server):
    state = tmp_path / "state"
    client = OscClient(0)

    def daemon():
        d = Daemon(state, "--notify", f"127.0.0.1:{client.port}", "--midi-in", "pads", midi="jack", audio="none")
        client.target = ("127.0.0.1", d.port)
        return d.start()

    d = daemon()
    try:
        client.drain()
        with jack_port(jack_server, "out", "pads") as pads:
            pads.send_message([0x9B, 61, 100])  # nothing is mapped yet: ignored
            client.send("/dd/learn", "like")
            assert client.expect("/dd/learning") == ["like"]  # the player listens for the press now
            pads.send_message([0x9B, 61, 100])  # channel 12, note 61
            pads.send_message([0x8B, 61, 0])
            assert client.expect("/dd/learned") == ["like", "note 61 ch 12"]
            client.send("/dd/status")
            before = client.expect("/dd/status")
            assert before[:2] == [0, 0]  # the learning press itself rated nothing
            pads.send_message([0x9B, 61, 100])
            assert client.expect("/dd/rated")[1:] == ["like", 1, 0]
            pads.send_message([0x9C, 61, 100])  # another channel: not the learnt pad
            client.send("/dd/learn", "lock", 9.5)
            assert "row must be an integer" in client.expect("/dd/error")[0]
    finally:
        assert d.stop() == 0, d.output()
    assert (state / midilearn.LEARNED_FILE).is_file()

    d = daemon()
    try:
        client.drain()
        with jack_port(jack_server, "out", "pads") as pads:
            pads.send_message([0x9B, 61, 100])
            assert client.expect("/dd/rated")[1:] == ["like", 2, 0]
            # A client that is not subscribed (a `send /dd/learn` macro) hears its answers too
            asker = OscClient(0)
            asker.target = client.target
            asker.send("/dd/learn", "next")
            assert asker.expect("/dd/learning") == ["next"]
            pads.send_message([0x9B, 62, 100])
            pads.send_message([0x8B, 62, 0])
            assert asker.expect("/dd/learned") == ["next", "note 62 ch 12"]
            asker.close()
    finally:
        client.close()
        assert d.stop() == 0, d.output()


def test_learning_without_an_input_port_is_an_error(tmp_path):
    client = OscClient(0)
    with Daemon(tmp_path / "state", midi="none", audio="none") as d:
        client.target = ("127.0.0.1", d.port)
        client.send("/dd/learn", "like")
        message, address = client.expect("/dd/error")
        assert address == "/dd/learn" and "--midi-in NAME" in message
        assert d.stop() == 0
    client.close()


def test_terminal_key_L_then_an_action_key_arms_learning(tmp_path):
    from deepdrummer_live.surfaces.tui import handle_key

    class Session:  # a fake for the unit: what handle_key calls
        def __init__(self):
            self.pad_learning = midilearn.MidiLearn(tmp_path / midilearn.LEARNED_FILE, lambda *a, **k: None)
            self.asked = []

        def midi_learn(self, action, row=None):
            self.asked.append((action, row))

        def origin(self, origin):
            return contextlib.nullcontext()

    s = Session()
    assert handle_key(s, "L").message == "MIDI learn: press l d n u s m f or 1-4 for the action"
    assert "no action on key 'x'" in handle_key(s, "x").error and s.asked == []
    handle_key(s, "L")
    assert handle_key(s, "3").message == "MIDI learn: press the pad for lock"
    handle_key(s, "L")
    handle_key(s, "d")
    assert s.asked == [("lock", 2), ("dislike", None)]
    handle_key(s, "L")
    assert "cancelled" in handle_key(s, "z").error and s.asked[-1] == ("dislike", None)
